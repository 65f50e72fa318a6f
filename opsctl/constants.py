"""Magic strings and default intervals, in one place (key names, TTLs, deadlines)."""

from __future__ import annotations

# Queue semantics (DESIGN.md §7)
DEFAULT_QUEUE = "default"
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_LEASE_S = 30.0
RETRY_BASE_S = 1.0
RETRY_CAP_S = 300.0
RESULT_TTL_S = 24 * 3600
IDEMPOTENCY_TTL_S = 24 * 3600

# Heartbeats: each process its own key, refreshed every interval, expiring after the TTL.
HEARTBEAT_INTERVAL_S = 5.0
HEARTBEAT_TTL_S = 15.0
HEARTBEAT_FORGET_S = 3600.0  # a stale heartbeat is listed this long, then forgotten

# Daemons
WORKER_CONCURRENCY = 10
WORKER_DRAIN_DEADLINE_S = 20.0
TIMERS_INTERVAL_S = 0.5
TIMERS_BATCH = 1000
SCHEDULER_INTERVAL_S = 1.0

# Health
DRAIN_THRESHOLD_S = 60.0

# Redis key layout under OPSCTL_REDIS_PREFIX (``P``) for queue ``Q``:
#   P:job:<id>            hash: the job, its attempts, fencing token and outcome
#   P:q:Q:ready           list of job ids ready to run (push left, pop right)
#   P:q:Q:active          zset id → lease deadline (Redis server time, seconds)
#   P:q:Q:delayed         zset id → time to run
#   P:q:Q:dead            zset id → time it died
#   P:q:Q:wake            list a blocked worker waits on; pushed when work arrives
#   P:q:Q:done:<second>   counter of completions in that second (expires)
#   P:idem:<key>          idempotency key → job id (expires)
#   P:hb:<host:pid>       one process's heartbeat (expires)
#   P:hb:index            zset host:pid → last beat, to list stale processes too
JOB_KEY = "{prefix}:job:{id}"
QUEUE_KEY = "{prefix}:q:{queue}:{part}"
IDEMPOTENCY_KEY = "{prefix}:idem:{key}"
HEARTBEAT_KEY = "{prefix}:hb:{id}"
HEARTBEAT_INDEX_KEY = "{prefix}:hb:index"
