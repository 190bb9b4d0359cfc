--[[
  tombstone-n: tombstone-1 over a batch of keys, for the worker (one call instead of one
  per key). Same rule per key: whatever is there becomes the tombstone, except a newer
  tombstone, which is kept and has its TTL extended. Used on a standalone Redis only: on
  Redis Cluster the worker sends tombstone-1 per key (keys of one call must share a slot).

  KEYS[1..n]  entry keys
  ARGV[1]     the tombstone: 'T' .. 16 hex digits of the LSN
  ARGV[2]     TTL in milliseconds

  Returns the number of keys written
]]
local written = 0
for i = 1, #KEYS do
  local current = redis.pcall('GET', KEYS[i])
  if type(current) == 'string' and string.len(current) == 17 and string.sub(current, 1, 1) == 'T'
      and current > ARGV[1] then
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
  else
    redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
    written = written + 1
  end
end
return written
