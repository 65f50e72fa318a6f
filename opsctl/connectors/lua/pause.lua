-- Pause scopes for every worker until now + seconds (server clock), never shortening a pause.
-- KEYS: 1 counters hash, then the pause keys
-- ARGV: 1 connector, 2 seconds, 3 '1' when the vendor answered with a throttle status
-- Returns the pause's deadline (server time, epoch seconds).
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local seconds = tonumber(ARGV[2])
local deadline = now + seconds
for i = 2, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if not v or tonumber(v) < deadline then
    redis.call('SET', KEYS[i], string.format('%.6f', deadline), 'PX', math.ceil(seconds * 1000) + 1)
  end
end
redis.call('HINCRBY', KEYS[1], ARGV[1] .. ':paused', 1)
if ARGV[3] == '1' then
  redis.call('HINCRBY', KEYS[1], ARGV[1] .. ':throttled', 1)
end
local until_field = ARGV[1] .. ':paused_until'
local before = tonumber(redis.call('HGET', KEYS[1], until_field) or '0')
if deadline > before then
  redis.call('HSET', KEYS[1], until_field, string.format('%.6f', deadline))
end
return string.format('%.6f', deadline)
