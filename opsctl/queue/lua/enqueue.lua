-- Add jobs: to the ready list (pushed left), or with a delay to the delayed set.
-- A repeated idempotency key or an id that exists gives back the first job's id, adding nothing.
-- KEYS: 1 ready, 2 delayed, 3 wake
-- ARGV: 1 job key prefix, 2 idempotency key prefix, 3 queue name, 4 idempotency TTL (s),
--       5 wake list cap, 6 a JSON array with one array a job: [id, kind, payload JSON text,
--       delay in s (0 = none), idempotency key ('' = none), max attempts]
-- Returns a JSON array: the id of each job, in order.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local nows = string.format('%.6f', now)
local out = {}
local pushed = {}
for _, job in ipairs(cjson.decode(ARGV[6])) do
  local id, idem = job[1], job[5]
  local existing = false
  if idem ~= '' then
    existing = redis.call('GET', ARGV[2] .. idem)
  end
  if existing then
    out[#out + 1] = existing
  else
    if idem ~= '' then
      redis.call('SET', ARGV[2] .. idem, id, 'EX', ARGV[4])
    end
    local key = ARGV[1] .. id
    if redis.call('EXISTS', key) == 0 then
      local delay = job[4]
      if delay > 0 then
        redis.call('HSET', key, 'kind', job[2], 'payload', job[3], 'queue', ARGV[3],
          'status', 'delayed', 'attempts', 0, 'max_attempts', job[6], 'token', 0,
          'created_at', nows, 'run_at', string.format('%.6f', now + delay), 'idem', idem)
        redis.call('ZADD', KEYS[2], now + delay, id)
      else
        redis.call('HSET', key, 'kind', job[2], 'payload', job[3], 'queue', ARGV[3],
          'status', 'ready', 'attempts', 0, 'max_attempts', job[6], 'token', 0,
          'created_at', nows, 'ready_at', nows, 'idem', idem)
        pushed[#pushed + 1] = id
      end
    end
    out[#out + 1] = id
  end
end
-- One LPUSH for many jobs, in slices that stay within Lua's stack for unpack.
for i = 1, #pushed, 1000 do
  redis.call('LPUSH', KEYS[1], unpack(pushed, i, math.min(i + 999, #pushed)))
end
if #pushed > 0 then
  redis.call('LPUSH', KEYS[3], '1')
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[5]) - 1)
end
return cjson.encode(out)
