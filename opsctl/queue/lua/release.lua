-- Put unfinished jobs back at the front of the ready list; the run does not count.
-- KEYS: 1 ready, 2 active, 3 wake
-- ARGV: 1 job key prefix, 2 wake list cap; then 2 values a job: id, token, the job to run
--       first given last.
-- Returns how many went back.
local t = redis.call('TIME')
local nows = string.format('%.6f', tonumber(t[1]) + tonumber(t[2]) / 1000000)
local moved = 0
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  local key = ARGV[1] .. id
  local f = redis.call('HMGET', key, 'token', 'status')
  if f[1] == ARGV[i + 1] and f[2] == 'active' then
    redis.call('ZREM', KEYS[2], id)
    redis.call('HINCRBY', key, 'attempts', -1)
    redis.call('HSET', key, 'status', 'ready', 'ready_at', nows)
    redis.call('RPUSH', KEYS[1], id)
    moved = moved + 1
  end
end
if moved > 0 then
  redis.call('LPUSH', KEYS[3], '1')
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[2]) - 1)
end
return moved
