-- Put a reserved job off until later through the delayed set; the run does not count (like
-- release, but later), and the reason is kept apart from failures' last_error.
-- KEYS: 1 active, 2 delayed
-- ARGV: 1 job key prefix, 2 id, 3 token, 4 reason ('' = none), 5 delay in s
-- Returns 'deferred' or 'stale' (nothing changed).
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local id = ARGV[2]
local key = ARGV[1] .. id
local f = redis.call('HMGET', key, 'token', 'status')
if f[1] ~= ARGV[3] or f[2] ~= 'active' then
  return 'stale'
end
redis.call('ZREM', KEYS[1], id)
-- promote.lua moves it to ready, and wakes a worker, once it is due.
local run_at = now + math.max(tonumber(ARGV[5]), 0)
redis.call('HINCRBY', key, 'attempts', -1)
redis.call('HSET', key, 'status', 'delayed', 'run_at', string.format('%.6f', run_at))
if ARGV[4] == '' then
  redis.call('HDEL', key, 'deferred_reason')
else
  redis.call('HSET', key, 'deferred_reason', ARGV[4])
end
redis.call('ZADD', KEYS[2], run_at, id)
return 'deferred'
