-- Write one process's heartbeat under its own expiring key, note it in the index, and forget
-- processes not seen for a long time.
-- KEYS: 1 the process's heartbeat key, 2 index, 3 last heartbeats
-- ARGV: 1 process id, 2 heartbeat JSON, 3 TTL (ms), 4 forget after (s)
-- Returns the server time of the beat.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
local cutoff = now - tonumber(ARGV[4])
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', cutoff)) do
  redis.call('HDEL', KEYS[3], id)
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', cutoff)
return string.format('%.6f', now)
