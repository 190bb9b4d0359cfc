--[[
  fill-1: store a loaded value only if the filler's lease is still in place.
  An invalidation that landed during the load replaced the lease with a tombstone,
  so a stale fill finds no lease and is refused.

  KEYS[1]  the entry key
  ARGV[1]  the lease prefix: 'L' .. token (fill) or 'R' .. token (refresh)
  ARGV[2]  the new value ('D' .. token .. envelope)
  ARGV[3]  TTL in milliseconds

  Returns 1 stored, 0 refused (lease lost)
]]
local current = redis.pcall('GET', KEYS[1])
if type(current) == 'string' and string.sub(current, 1, 17) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
