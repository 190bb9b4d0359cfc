--[[
  wb-put: accepts one write-behind patch. The pending record of a row is a hash holding
  the merged patch (last write wins per column, in arrival order), the sequence number of
  its last write and the time its first pending write arrived. All keys of an entity
  share one hash tag, so this runs on Redis Cluster.

  KEYS[1]  the row's pending record (hash)
  KEYS[2]  the entity's queue (sorted set: row key by first pending time)
  KEYS[3]  the entity's sequence counter
  ARGV[1]  now, ms
  ARGV[2]  the row's cache key (queue member)
  ARGV[3..] column, encoded value, column, encoded value...

  Returns { sequence number of this write, rows pending }
]]
local seq = redis.call('INCR', KEYS[3])
local fields = { 's', seq }
for i = 3, #ARGV, 2 do
  fields[#fields + 1] = 'c:' .. ARGV[i]
  fields[#fields + 1] = ARGV[i + 1]
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('HSETNX', KEYS[1], 't', ARGV[1])
redis.call('ZADD', KEYS[2], 'NX', ARGV[1], ARGV[2])
return { seq, redis.call('ZCARD', KEYS[2]) }
