--[[
  wb-unqueue-if-gone: removes a row from the entity's queue only if it has no pending
  record. A flush that read a queued row whose record was just cleared must not remove
  the row unconditionally: a write may have recreated the record in between (its ZADD NX
  found the row still queued), and the row would leave the queue with a write pending.

  KEYS[1]  the entity's queue
  KEYS[2]  the row's pending record
  ARGV[1]  the row key (queue member)

  Returns 1 when removed
]]
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
return redis.call('ZREM', KEYS[1], ARGV[1])
