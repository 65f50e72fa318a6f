-- Move delayed jobs whose time has come to the back of the ready list, oldest due first.
-- KEYS: 1 delayed, 2 ready, 3 wake
-- ARGV: 1 job key prefix, 2 limit, 3 wake list cap
-- Returns how many moved.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local nows = string.format('%.6f', now)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local moved = 0
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local key = ARGV[1] .. id
  if redis.call('HGET', key, 'status') == 'delayed' then
    redis.call('HSET', key, 'status', 'ready', 'ready_at', nows)
    redis.call('LPUSH', KEYS[2], id)
    moved = moved + 1
  end
end
if moved > 0 then
  redis.call('LPUSH', KEYS[3], '1')
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[3]) - 1)
end
return moved
