-- Counts of every state, the age of the next job to run, completions in the last minute, and
-- the delayed jobs whose time has come but that are still in the delayed set.
-- KEYS: 1 ready, 2 delayed, 3 active, 4 dead
-- ARGV: 1 job key prefix, 2 completion counter prefix
-- Returns {waiting, delayed, active, dead, oldest waiting age (s), completed last minute,
--          delayed due, how far the most overdue delayed job is past its time (s)}.
-- Every part is O(log N) or a fixed number of reads: health checks poll this.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local age = 0
local oldest = redis.call('LINDEX', KEYS[1], -1)
if oldest then
  local f = redis.call('HMGET', ARGV[1] .. oldest, 'ready_at', 'created_at')
  local since = tonumber(f[1] or f[2])
  if since then age = math.max(0, now - since) end
end
local second = tonumber(t[1])
local completed = 0
for s = second - 59, second do
  completed = completed + (tonumber(redis.call('GET', ARGV[2] .. s)) or 0)
end
local due = redis.call('ZCOUNT', KEYS[2], '-inf', now)
local overdue = 0
if due > 0 then
  local head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  overdue = math.max(0, now - tonumber(head[2]))
end
return {redis.call('LLEN', KEYS[1]), redis.call('ZCARD', KEYS[2]), redis.call('ZCARD', KEYS[3]),
  redis.call('ZCARD', KEYS[4]), string.format('%.6f', age), completed, due,
  string.format('%.6f', overdue)}
