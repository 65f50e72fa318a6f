-- Record a failed run: retry through the delayed set, or dead-letter it past the attempt limit
-- or when no retry time is given.
-- KEYS: 1 active, 2 delayed, 3 dead
-- ARGV: 1 job key prefix, 2 id, 3 token, 4 error, 5 retry delay in s ('' = dead now)
-- Returns 'retry', 'dead' or 'stale'.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local nows = string.format('%.6f', now)
local id = ARGV[2]
local key = ARGV[1] .. id
local f = redis.call('HMGET', key, 'token', 'status', 'attempts', 'max_attempts')
if f[1] ~= ARGV[3] or f[2] ~= 'active' then
  return 'stale'
end
redis.call('ZREM', KEYS[1], id)
local delay = tonumber(ARGV[5])
if delay == nil or tonumber(f[3]) >= tonumber(f[4]) then
  redis.call('HSET', key, 'status', 'dead', 'last_error', ARGV[4], 'finished_at', nows)
  redis.call('ZADD', KEYS[3], now, id)
  return 'dead'
end
local run_at = now + math.max(delay, 0)
redis.call('HSET', key, 'status', 'delayed', 'last_error', ARGV[4],
  'run_at', string.format('%.6f', run_at))
redis.call('ZADD', KEYS[2], run_at, id)
return 'retry'
