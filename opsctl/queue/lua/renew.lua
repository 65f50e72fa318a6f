-- Extend the leases of in-flight jobs whose token is still current.
-- KEYS: 1 active
-- ARGV: 1 job key prefix, 2 lease (s), 3 a JSON array with one array a job: [id, token]
-- Returns a JSON array of the ids whose lease was lost.
local t = redis.call('TIME')
local deadline = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[2])
local kept, lost = {}, {}
for _, job in ipairs(cjson.decode(ARGV[3])) do
  local id = job[1]
  local f = redis.call('HMGET', ARGV[1] .. id, 'token', 'status')
  -- Current token and 'active' means the job is in the active set: every move is atomic.
  if tonumber(f[1]) == job[2] and f[2] == 'active' then
    kept[#kept + 1] = deadline
    kept[#kept + 1] = id
  else
    lost[#lost + 1] = id
  end
end
for i = 1, #kept, 1000 do
  redis.call('ZADD', KEYS[1], 'XX', unpack(kept, i, math.min(i + 999, #kept)))
end
if #lost == 0 then
  return '[]'
end
return cjson.encode(lost)
