-- Admit one request under every policy that covers it, all or nothing, on the server clock.
--
-- A policy's budget is the fleet bucket of docs/connectors.md (capacity C, refill r per second);
-- window policies also keep the window's own count under the safe cap floor(f*L) (fixed: per
-- aligned window; sliding: the two-window approximation). A concurrency policy is a sorted
-- set of leases scored by their expiry, so a crashed worker's lease lapses.
--
-- The answer is the earliest time AT when every policy admits (and no pause runs). AT now:
-- charged, go. AT within HORIZON seconds: charged as of AT (a reservation: go at AT without
-- asking again). Later, or a full concurrency policy: nothing charged, ask again after the
-- wait. Reservations on one budget are made in time order (AT is never before the budget's
-- latest admission), so the bucket's bound holds exactly: no span of W sees more than C + rW.
--
-- KEYS: 1 counters hash, 2 connection pause key, then per policy: state key, pause key, then
--       the lease sets of released leases
-- ARGV: 1 connector, 2 lease id, 3 lease seconds, 4 concurrency poll seconds, 5 horizon
--       seconds, 6 policy count N, 7 release count R, then R lease ids, then 7 values a
--       policy: kind (f fixed, s sliding, b bucket, c concurrency), capacity, refill/s,
--       window s, window cap, max in flight, cost
-- Returns '' (admitted now), 'r<seconds>' (reserved: go after that long) or 'w<seconds>'
-- (refused: ask again after that long).
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local n, nrel = tonumber(ARGV[6]), tonumber(ARGV[7])
for i = 1, nrel do
  redis.call('ZREM', KEYS[2 + 2 * n + i], ARGV[7 + i])
end
local at, poll = now, nil
local function pause(key)
  local v = redis.call('GET', key)
  if v and tonumber(v) > at then at = tonumber(v) end
end
pause(KEYS[2])
local plan = {}
for i = 1, n do
  local o = 7 + nrel + (i - 1) * 7
  local p = {kind = ARGV[o + 1], cap = tonumber(ARGV[o + 2]), rate = tonumber(ARGV[o + 3]),
    win = tonumber(ARGV[o + 4]), wcap = tonumber(ARGV[o + 5]), max = tonumber(ARGV[o + 6]),
    cost = tonumber(ARGV[o + 7]), key = KEYS[1 + 2 * i]}
  pause(KEYS[2 + 2 * i])
  if p.kind == 'c' then
    redis.call('ZREMRANGEBYSCORE', p.key, '-inf', now)
    if redis.call('ZCARD', p.key) >= p.max then
      local first = redis.call('ZRANGE', p.key, 0, 0, 'WITHSCORES')
      local d = math.min(tonumber(first[2]) - now, tonumber(ARGV[4]))
      if not poll or d > poll then poll = d end
    end
  else
    local h = redis.call('HMGET', p.key, 'tk', 'ts', 'ws', 'cur', 'prev')
    if h[1] then
      p.tk, p.ts = tonumber(h[1]), tonumber(h[2])
      p.ws, p.cur, p.prev = tonumber(h[3]), tonumber(h[4] or '0'), tonumber(h[5] or '0')
    end
  end
  plan[i] = p
end

local function tokens(p, x) -- the bucket at x, no earlier than its latest admission
  if not p.ts then return p.cap end
  return math.min(p.cap, p.tk + (x - p.ts) * p.rate)
end
local function counts(p, k) -- this window's count and the previous one's
  if p.ws == k then return p.cur, p.prev end
  if p.ws == k - 1 then return 0, p.cur end
  return 0, 0
end
local function earliest(p, x) -- the first time from x when this policy admits
  if p.ts and x < p.ts then x = p.ts end
  local need = math.min(p.cost, p.cap)
  local have = tokens(p, x)
  if have < need then x = x + (need - have) / p.rate end
  if p.win > 0 then
    local cap = math.max(p.wcap, p.cost)
    for _ = 1, 10000 do
      local k = math.floor(x / p.win)
      local cur, prev = counts(p, k)
      local e = x - k * p.win
      if cur + p.cost > cap + 1e-9 then
        x = (k + 1) * p.win
      else
        if p.kind == 's' and prev > 0 and prev * (p.win - e) / p.win + cur + p.cost > cap + 1e-9 then
          x = k * p.win + p.win * (1 - (cap - cur - p.cost) / prev)
        end
        break
      end
    end
  end
  return x
end

local settled = false
for _ = 1, 64 do
  local nxt = at
  for i = 1, n do
    if plan[i].kind ~= 'c' then
      local e = earliest(plan[i], at)
      if e > nxt then nxt = e end
    end
  end
  if nxt <= at then settled = true break end
  at = nxt
end
local wait = at - now
if poll or not settled or wait > tonumber(ARGV[5]) then
  redis.call('HINCRBY', KEYS[1], ARGV[1] .. ':refused', 1)
  return 'w' .. string.format('%.6f', math.max(wait, poll or 0))
end
for i = 1, n do
  local p = plan[i]
  if p.kind == 'c' then
    redis.call('ZADD', p.key, at + tonumber(ARGV[3]), ARGV[2])
    redis.call('PEXPIRE', p.key, math.ceil((wait + tonumber(ARGV[3])) * 1000) + 1000)
  else
    local left = tokens(p, at) - p.cost
    local fields = {'tk', string.format('%.9f', left), 'ts', string.format('%.6f', at)}
    local ttl = wait + (p.cap - left) / p.rate
    if p.win > 0 then
      local k = math.floor(at / p.win)
      local cur, prev = counts(p, k)
      for _, v in ipairs({'ws', k, 'cur', cur + p.cost, 'prev', prev}) do
        fields[#fields + 1] = v
      end
      ttl = math.max(ttl, (k + 2) * p.win - now)
    end
    redis.call('HSET', p.key, unpack(fields))
    -- Past this, a fresh state (full bucket, empty windows) is what the stored one would be.
    redis.call('PEXPIRE', p.key, math.ceil(ttl * 1000) + 1000)
  end
end
redis.call('HINCRBY', KEYS[1], ARGV[1] .. ':admitted', 1)
if wait > 0 then
  redis.call('HINCRBY', KEYS[1], ARGV[1] .. ':delayed', 1)
  return 'r' .. string.format('%.6f', wait)
end
return ''
