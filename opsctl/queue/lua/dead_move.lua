-- Retry or purge dead jobs: all of them (oldest first, LIMIT at a time) or the ids given.
-- Retried jobs go to the back of the ready list with a fresh attempt count.
-- KEYS: 1 dead, 2 ready, 3 wake
-- ARGV: 1 job key prefix, 2 idempotency key prefix, 3 wake list cap, 4 action ('retry' or
--       'purge'), 5 limit for all ('' = the ids that follow), then ids
-- Returns {moved, examined}.
local t = redis.call('TIME')
local nows = string.format('%.6f', tonumber(t[1]) + tonumber(t[2]) / 1000000)
local ids
if ARGV[5] ~= '' then
  ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[5]) - 1)
else
  ids = {}
  for i = 6, #ARGV do ids[#ids + 1] = ARGV[i] end
end
local moved, examined = 0, 0
for _, id in ipairs(ids) do
  examined = examined + 1
  if redis.call('ZREM', KEYS[1], id) == 1 then
    local key = ARGV[1] .. id
    if ARGV[4] == 'retry' then
      if redis.call('HGET', key, 'status') == 'dead' then
        redis.call('HSET', key, 'status', 'ready', 'attempts', 0, 'ready_at', nows)
        redis.call('HDEL', key, 'finished_at')
        redis.call('LPUSH', KEYS[2], id)
        moved = moved + 1
      end
    else
      local idem = redis.call('HGET', key, 'idem')
      if idem and idem ~= '' and redis.call('GET', ARGV[2] .. idem) == id then
        redis.call('DEL', ARGV[2] .. idem)
      end
      moved = moved + redis.call('DEL', key)
    end
  end
end
if ARGV[4] == 'retry' and moved > 0 then
  redis.call('LPUSH', KEYS[3], '1')
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[3]) - 1)
end
return {moved, examined}
