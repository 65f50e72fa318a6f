-- Acknowledge jobs: only an active job whose token is still current is marked done.
-- KEYS: 1 active
-- ARGV: 1 job key prefix, 2 completion counter prefix, 3 result TTL (s),
--       4 a JSON array with one array a job: [id, token, result JSON text]
-- Returns one character a job: '1' done, '0' stale token (nothing written).
local t = redis.call('TIME')
local nows = string.format('%.6f', tonumber(t[1]) + tonumber(t[2]) / 1000000)
local out = {}
local done = {}
for _, job in ipairs(cjson.decode(ARGV[4])) do
  local id = job[1]
  local key = ARGV[1] .. id
  local f = redis.call('HMGET', key, 'token', 'status')
  if tonumber(f[1]) == job[2] and f[2] == 'active' then
    redis.call('HSET', key, 'status', 'done', 'result', job[3], 'finished_at', nows)
    redis.call('EXPIRE', key, ARGV[3])
    out[#out + 1] = '1'
    done[#done + 1] = id
  else
    out[#out + 1] = '0'
  end
end
if #done > 0 then
  for i = 1, #done, 1000 do
    redis.call('ZREM', KEYS[1], unpack(done, i, math.min(i + 999, #done)))
  end
  local counter = ARGV[2] .. t[1]
  redis.call('INCRBY', counter, #done)
  redis.call('EXPIRE', counter, 120)
end
return table.concat(out)
