--[[
  wb-ack-n: clears the pending records a flush wrote to Postgres, exactly those: a record
  whose sequence number moved (a write arrived during the flush) stays pending, and is
  flushed again with its newer values.

  KEYS[1]     the entity's queue
  KEYS[2..n]  pending records
  ARGV[i]     the sequence number flushed for KEYS[i + 1]
  ARGV[n..]   the queue members (row keys), in the same order

  Returns the number of records cleared
]]
local count = #KEYS - 1
local cleared = 0
for i = 1, count do
  local seq = redis.call('HGET', KEYS[i + 1], 's')
  if seq == ARGV[i] then
    redis.call('DEL', KEYS[i + 1])
    redis.call('ZREM', KEYS[1], ARGV[count + i])
    cleared = cleared + 1
  end
end
return cleared
