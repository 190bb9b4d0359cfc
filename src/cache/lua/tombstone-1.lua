--[[
  tombstone-1: invalidate an entry. Whatever it holds (data, a lease, nothing) becomes
  a tombstone, so a fill that began before the invalidation finds its lease gone. A
  newer tombstone is kept (its TTL is extended): invalidations may be replayed.

  KEYS[1]  the entry key
  ARGV[1]  the tombstone: 'T' .. 16 hex digits of the LSN ('T0000000000000000' locally)
  ARGV[2]  TTL in milliseconds: longer than the worst invalidation lag

  Returns 1 written, 0 a newer tombstone was already there
]]
local current = redis.pcall('GET', KEYS[1])
if type(current) == 'string' and string.len(current) == 17 and string.sub(current, 1, 1) == 'T'
    and current > ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
