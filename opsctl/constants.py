"""Magic strings and default intervals, in one place (key names, TTLs, deadlines)."""

from __future__ import annotations

# Queue semantics (opsctl/queue/base.py)
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
HEARTBEAT_WARN_TTLS = 2  # a stale worker beside live ones warns this many TTLs after its beat
HEARTBEAT_RESERVED_IDS = ("index", "last")  # P:hb:index and P:hb:last are not processes

# Daemons
WORKER_CONCURRENCY = 10
WORKER_DRAIN_DEADLINE_S = 20.0
TIMERS_INTERVAL_S = 0.5
TIMERS_BATCH = 1000
SCHEDULER_INTERVAL_S = 1.0
WORKER_RESERVE_WAIT_S = 0.5  # a reserve blocks this long for the first job, then loops
WORKER_MAINTENANCE_S = 2.0  # fallback promote/requeue when no timers daemon runs
WORKER_COMPLETE_BATCH = 1000  # most results acknowledged in one call
WORKER_FLUSH_DELAY_S = 0.001  # results gather this long before they are acknowledged
BACKEND_RETRY_MIN_S = 0.5  # backoff while the queue backend is unreachable
BACKEND_RETRY_MAX_S = 5.0

# Job kinds
JOB_TIMEOUT_S = 300.0
JOB_MODULES_ENV = "OPSCTL_JOB_MODULES"  # comma list of modules that register job kinds
SCHEDULE_JOB_ID = "sched:{name}:{occurrence}"  # one id per cron occurrence

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
#   P:hb:last             hash host:pid → its last heartbeat, so a stale one still shows its role
#   P:rl:<connector>:<policy>:<scope>        one vendor budget (opsctl/connectors/limiter_state.py):
#                         hash (bucket tokens, window counts) or zset lease → expiry (concurrency)
#   P:rl:<connector>:<policy>:<scope>:pause  the budget's pause deadline after a vendor signal
#   P:rl:<connector>:~:<connection>:pause    a connection's pause when no policy covered the call
#   P:rl:counters         hash <connector>:admitted|delayed|refused|throttled|paused|paused_until
JOB_KEY = "{prefix}:job:{id}"
QUEUE_KEY = "{prefix}:q:{queue}:{part}"
IDEMPOTENCY_KEY = "{prefix}:idem:{key}"
HEARTBEAT_KEY = "{prefix}:hb:{id}"
HEARTBEAT_INDEX_KEY = "{prefix}:hb:index"
HEARTBEAT_LAST_KEY = "{prefix}:hb:last"
RATE_LIMIT_KEY = "{prefix}:rl:{connector}:{policy}:{scope}"
RATE_LIMIT_PAUSE_SUFFIX = ":pause"
RATE_LIMIT_COUNTERS_KEY = "{prefix}:rl:counters"

# The shared vendor rate limiter (opsctl/connectors/limiter.py and its limiter_*.py modules)
RATE_LIMIT_LEASE_S = 60.0  # a concurrency lease lapses after this (past the request timeout)
RATE_LIMIT_POLL_S = 0.05  # a full concurrency policy is asked again after at most this
RATE_LIMIT_RELEASE_FLUSH_S = 0.005  # a lease given back rides the next acquire, or goes alone
RATE_LIMIT_RESERVATION_GRACE_S = 5.0  # a reservation not claimed this long after is dropped
RATE_LIMIT_DEFAULT_PAUSE_S = 1.0  # a throttle answer that says nothing of how long to wait
RATE_LIMIT_FALLBACK_PAUSE_CAP_S = 60.0  # ...pauses the shortest matching window, up to this
RATE_LIMIT_MAX_PAUSE_S = 3600.0  # a vendor asking for longer is believed only this far

# Topology and supervisor (opsctl/topology.py, opsctl/supervisor/)
WEB_DRAIN_DEADLINE_S = 20.0  # in-flight requests finish within this after SIGTERM
SCHEDULER_DRAIN_DEADLINE_S = 5.0  # a tick in progress finishes, then the scheduler exits
TIMERS_DRAIN_DEADLINE_S = 5.0
KILL_GRACE_S = 10.0  # a kill timeout is the drain deadline plus this margin
READINESS_PATH = "/api/health/ready"
PRODUCTION_READY_PATH = "/api/production/ready"
HEARTBEAT_PATH = "/api/production/queue/heartbeat"
DEPLOY_GATE_TIMEOUT_S = 120
DEPLOY_GATE_TIMEOUT_RANGE_S = (0.1, 3600.0)
DEPLOY_GATE_INTERVAL_S = 2.0  # between failed rounds
DEPLOY_GATE_INTERVAL_RANGE_S = (0.05, 600.0)
SUPERVISOR_SOCKET = "supervisor.sock"  # in OPSCTL_DATA_DIR

# Encryption keys and the rotation daemon (opsctl/crypto/, daemons/encryption_rotation.py)
KEYRING_FILE = "keyring.json"  # in OPSCTL_DATA_DIR: the development master key, mode 0600
KEY_MAX_AGE_DAYS = 90.0  # OPSCTL_KEY_MAX_AGE_DAYS: the daemon replaces an active key this old
KEYS_ROTATE_LOCK = "opsctl:keys:rotate"  # store.locked name: one key change at a time
KEYS_REENCRYPT_LOCK = "opsctl:keys:reencrypt"  # store.locked name: one batch at a time
ROTATION_BATCH = 500  # rows re-encrypted per transaction
ROTATION_INTERVAL_S = 2.0  # how often an idle daemon looks for a new key or rows to move
ROTATION_RESCAN_S = 300.0  # a pass that left undecryptable rows behind is retried this often
ROTATION_RECOUNT_S = 30.0  # an idle daemon recounts rows per key (for its heartbeat) this often
MASTER_KEY_RELOAD_S = 60.0  # processes look for a changed master key at most this often
ROTATION_DRAIN_DEADLINE_S = 10.0  # the batch under way commits, then the daemon exits
KEYS_WAIT_TIMEOUT_S = 600.0  # `opsctl keys rotate --wait` gives up after this long
