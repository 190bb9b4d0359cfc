--[[
  wb-put-n: accepts write-behind patches, one or many of one entity in a call (the writes
  of one event-loop tick). A row's pending record is a hash with one field per accepted
  write: its sequence number -> the encoded patch. Nothing is merged here (a flush, a read
  or a repository write merges them in sequence order), so each write costs one HSET, and
  a flush or a repository write can clear exactly the writes it applied. All keys of an
  entity share one hash tag, so this runs on Redis Cluster.

  KEYS[1]     the entity's queue (sorted set: row key -> time its oldest write arrived, ms)
  KEYS[2]     the entity's sequence counter
  KEYS[2+i]   the pending record of the i-th patch's row
  ARGV[1]     now, ms
  ARGV[2i]    the i-th patch's row key (queue member)
  ARGV[2i+1]  the i-th patch, encoded

  Returns { sequence number of the first patch (the i-th has first + i - 1), rows pending }
]]
local n = #KEYS - 2
local first = redis.call('INCRBY', KEYS[2], n) - n + 1
local now = ARGV[1]
for i = 1, n do
  redis.call('HSET', KEYS[2 + i], first + i - 1, ARGV[2 * i + 1])
  redis.call('ZADD', KEYS[1], 'NX', now, ARGV[2 * i])
end
return { first, redis.call('ZCARD', KEYS[1]) }
