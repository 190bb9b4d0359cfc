--[[
  wb-put-n: accepts write-behind patches, one or many of one entity in a call (the writes
  of one event-loop tick). Each row's pending record is a hash holding the merged patch
  (last write wins per column, in arrival order), the sequence number of its last write
  and the time its first pending write arrived. Each patch is applied whole, in order. All
  keys of an entity share one hash tag, so this runs on Redis Cluster.

  KEYS[1]     the entity's queue (sorted set: row key by first pending time)
  KEYS[2]     the entity's sequence counter
  KEYS[2+i]   the pending record of the i-th patch's row
  ARGV[1]     now, ms
  ARGV[2]     the number of patches n
  then, per patch: the row key (queue member), the number of columns c, and c pairs of
  column, encoded value

  Returns { sequence number of each patch..., rows pending }
]]
local now = ARGV[1]
local n = tonumber(ARGV[2])
local pos = 3
local out = {}
for i = 1, n do
  local member = ARGV[pos]
  local count = tonumber(ARGV[pos + 1])
  pos = pos + 2
  local seq = redis.call('INCR', KEYS[2])
  local fields = { 's', seq }
  for _ = 1, count do
    fields[#fields + 1] = 'c:' .. ARGV[pos]
    fields[#fields + 1] = ARGV[pos + 1]
    pos = pos + 2
  end
  redis.call('HSET', KEYS[2 + i], unpack(fields))
  redis.call('HSETNX', KEYS[2 + i], 't', now)
  redis.call('ZADD', KEYS[1], 'NX', now, member)
  out[i] = seq
end
out[n + 1] = redis.call('ZCARD', KEYS[1])
return out
