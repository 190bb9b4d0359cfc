--[[
  wb-fail: counts a failed flush of one pending record. Past the attempt limit, a record
  still holding the values that failed moves to the dead-letter list: its hash is renamed
  (kept for inspection and replay) and an entry naming it and the error is appended.
  A record that changed meanwhile (a newer write) gets its attempts reset instead.

  KEYS[1]  the pending record
  KEYS[2]  the entity's queue
  KEYS[3]  the dead-letter list
  KEYS[4]  the name the record takes in the dead-letter list
  ARGV[1]  the sequence number that failed
  ARGV[2]  the attempt limit
  ARGV[3]  the dead-letter entry (JSON, without attempts)
  ARGV[4]  the row key (queue member)

  Returns 1 when the record went to the dead-letter list, else 0
]]
local seq = redis.call('HGET', KEYS[1], 's')
if seq == false then return 0 end
if seq ~= ARGV[1] then
  redis.call('HSET', KEYS[1], 'a', 0)
  return 0
end
local attempts = redis.call('HINCRBY', KEYS[1], 'a', 1)
if attempts < tonumber(ARGV[2]) then return 0 end
redis.call('RENAME', KEYS[1], KEYS[4])
redis.call('ZREM', KEYS[2], ARGV[4])
redis.call('RPUSH', KEYS[3], ARGV[3])
return 1
