-- Forget processes: each one's own heartbeat key, its index entry and its last heartbeat.
-- KEYS: 1 index, 2 last heartbeats
-- ARGV: 1 heartbeat key prefix, 2 '1' to keep a process whose own key is still there, then ids
-- Returns the ids that were known and are now forgotten.
local out = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local key = ARGV[1] .. id
  -- 'index' and 'last' name the two shared keys, never a process: leave them alone.
  if key ~= KEYS[1] and key ~= KEYS[2] then
    local live = redis.call('EXISTS', key) == 1
    if not (live and ARGV[2] == '1') then
      local known = live
      if redis.call('ZREM', KEYS[1], id) == 1 then known = true end
      if redis.call('HDEL', KEYS[2], id) == 1 then known = true end
      if live then redis.call('DEL', key) end
      if known then out[#out + 1] = id end
    end
  end
end
return out
