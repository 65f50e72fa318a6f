-- Every process seen recently: whether its own key is still there, its last beat and data.
-- KEYS: 1 index, 2 last heartbeats
-- ARGV: 1 heartbeat key prefix, 2 forget after (s)
-- Returns {now, then 4 values a process: id, last beat, 1 if its key is live else 0, JSON}.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cutoff = now - tonumber(ARGV[2])
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff)) do
  redis.call('HDEL', KEYS[2], id)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff)
local out = {string.format('%.6f', now)}
local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #entries, 2 do
  local id = entries[i]
  local data = redis.call('GET', ARGV[1] .. id)
  out[#out + 1] = id
  out[#out + 1] = entries[i + 1]
  if data then
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
    data = redis.call('HGET', KEYS[2], id) or ''
  end
  out[#out + 1] = data
end
return out
