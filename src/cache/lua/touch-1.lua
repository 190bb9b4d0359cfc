--[[
  touch-1: sliding expiration. Moves an entry's freshUntil and staleUntil (bytes 28-43 of
  the value, big-endian float64s: see src/cache/envelope.ts) and the key's expiry, only if
  it still holds the fill the caller read, and only forward: a touch never revives a
  replaced fill (a tombstone, another fill, a lease) nor shortens another's extension.

  KEYS[1]  the entry key
  ARGV[1]  the first 17 bytes of the value the caller read ('D' .. token)
  ARGV[2]  the new freshUntil and staleUntil: 16 bytes, two big-endian float64s
  ARGV[3]  the key's new TTL in milliseconds (until the new staleUntil)

  Returns 1 moved, 0 the entry had changed (or was already further)
]]
local key, prefix, times, ttl = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local head = redis.pcall('GETRANGE', key, 0, 42)
if type(head) ~= 'string' or #head < 43 or string.sub(head, 1, 17) ~= prefix then return 0 end
if struct.unpack('>d', times) <= struct.unpack('>d', string.sub(head, 28, 35)) then return 0 end
redis.call('SETRANGE', key, 27, times)
redis.call('PEXPIRE', key, ttl)
return 1
