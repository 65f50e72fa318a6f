-- Give back concurrency leases (when no acquire came along to carry them).
-- KEYS: the lease sets; ARGV: the lease ids, one for each key
for i = 1, #KEYS do
  redis.call('ZREM', KEYS[i], ARGV[i])
end
return #KEYS
