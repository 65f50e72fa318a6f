-- Take up to COUNT ready jobs under a lease: each gets a new fencing token and counts a run.
-- KEYS: 1 ready, 2 active, 3 wake
-- ARGV: 1 job key prefix, 2 count, 3 lease (s), 4 owner, 5 wake list cap
-- Returns one JSON array, parsed in one call by the client: [now, lease_until, then 7 values
-- a job: id, kind, payload, attempt, max_attempts, token, created_at]. The stored payload is
-- JSON already, so it is embedded as it is.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local nows = string.format('%.6f', now)
local deadline = now + tonumber(ARGV[3])
local deadlines = string.format('%.6f', deadline)
local out = {'[', nows, ',', deadlines}
local ids = redis.call('RPOP', KEYS[1], ARGV[2])
if ids then
  local leased = {}
  for _, id in ipairs(ids) do
    local key = ARGV[1] .. id
    local f = redis.call('HMGET', key, 'status', 'kind', 'payload', 'max_attempts', 'created_at',
      'token', 'attempts')
    -- An id whose job is not 'ready' is a leftover; dropping it loses nothing.
    if f[1] == 'ready' then
      local token, attempt = tonumber(f[6]) + 1, tonumber(f[7]) + 1
      redis.call('HSET', key, 'status', 'active', 'token', token, 'attempts', attempt,
        'started_at', nows, 'owner', ARGV[4])
      leased[#leased + 1] = deadline
      leased[#leased + 1] = id
      out[#out + 1] = ','
      out[#out + 1] = cjson.encode(id)
      out[#out + 1] = ','
      out[#out + 1] = cjson.encode(f[2])
      out[#out + 1] = ','
      out[#out + 1] = f[3]
      out[#out + 1] = string.format(',%d,%d,%d,', attempt, tonumber(f[4]), token)
      out[#out + 1] = f[5]
    end
  end
  -- One ZADD for many jobs, in slices that stay within Lua's stack for unpack.
  for i = 1, #leased, 1000 do
    redis.call('ZADD', KEYS[2], unpack(leased, i, math.min(i + 999, #leased)))
  end
end
out[#out + 1] = ']'
-- Work left: wake the next blocked worker. None left: any wake token is stale, since every
-- push to the ready list comes with one.
if redis.call('LLEN', KEYS[1]) > 0 then
  redis.call('LPUSH', KEYS[3], '1')
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[5]) - 1)
else
  redis.call('DEL', KEYS[3])
end
return table.concat(out)
