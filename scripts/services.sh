#!/usr/bin/env bash
# Make sure the PostgreSQL and Redis that the tests use are running; start them if not.
set -uo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }

if ! pg_up; then
  echo "services: starting PostgreSQL" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
fi
if ! redis_up; then
  echo "services: starting Redis" >&2
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
fi
# nginx lets the rate-limit tests load and drive the proxy configuration they generate; the
# tests skip without it, so a failed install only costs those two tests.
if ! command -v nginx >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "services: installing nginx-light for the proxy configuration tests" >&2
  { apt-get install -y -q nginx-light || { apt-get update -q && apt-get install -y -q nginx-light; }; } \
    >/dev/null 2>&1 || echo "services: nginx could not be installed; its tests will skip" >&2
fi

for _ in $(seq 1 50); do
  pg_up && redis_up && exit 0
  sleep 0.2
done
pg_up || echo "services: PostgreSQL is not answering on 127.0.0.1:5432" >&2
redis_up || echo "services: Redis is not answering on 127.0.0.1:6379" >&2
exit 1
