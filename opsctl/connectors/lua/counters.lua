-- The limiter's counters per connector, and the server time to read pause deadlines against.
-- KEYS: 1 counters hash
-- Returns {now, field, value, field, value, ...}
local t = redis.call('TIME')
local out = {string.format('%.6f', tonumber(t[1]) + tonumber(t[2]) / 1000000)}
for _, v in ipairs(redis.call('HGETALL', KEYS[1])) do
  out[#out + 1] = v
end
return out
