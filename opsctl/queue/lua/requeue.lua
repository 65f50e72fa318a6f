-- Put jobs whose lease lapsed back at the front of the ready list. The lapsed run counts, so a
-- job that kills its worker every time is dead-lettered once it reaches its attempt limit.
-- KEYS: 1 active, 2 ready, 3 dead, 4 wake
-- ARGV: 1 job key prefix, 2 limit, 3 wake list cap
-- Returns how many moved (to ready or dead).
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local nows = string.format('%.6f', now)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local moved, ready = 0, 0
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local key = ARGV[1] .. id
  local f = redis.call('HMGET', key, 'status', 'attempts', 'max_attempts', 'owner')
  if f[1] == 'active' then
    moved = moved + 1
    local attempts, max_attempts = tonumber(f[2]), tonumber(f[3])
    if attempts >= max_attempts then
      redis.call('HSET', key, 'status', 'dead', 'finished_at', nows, 'last_error',
        string.format('lease expired on run %d of %d: worker %s stopped renewing it',
          attempts, max_attempts, f[4] or '?'))
      redis.call('ZADD', KEYS[3], now, id)
    else
      redis.call('HSET', key, 'status', 'ready', 'ready_at', nows)
      redis.call('RPUSH', KEYS[2], id)
      ready = ready + 1
    end
  end
end
if ready > 0 then
  redis.call('LPUSH', KEYS[4], '1')
  redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[3]) - 1)
end
return moved
