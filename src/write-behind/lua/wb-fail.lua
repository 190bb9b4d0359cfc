--[[
  wb-fail: counts a failed flush of a pending record. Past the attempt limit, exactly the
  writes that failed move to a dead-letter hash (kept for inspection and replay) and an
  entry naming it and the error is appended to the dead-letter list; writes accepted
  since stay pending and are flushed on their own. Nothing is counted when none of the
  failed writes is still there (a repository write applied them meanwhile).

  KEYS[1]   the pending record
  KEYS[2]   the entity's queue
  KEYS[3]   the dead-letter list
  KEYS[4]   the dead-letter hash for these writes
  ARGV[1]   the attempt limit
  ARGV[2]   the dead-letter entry (JSON)
  ARGV[3]   the row key (queue member)
  ARGV[4..] the sequence numbers of the writes that failed

  Returns 1 when the writes went to the dead-letter list, else 0
]]
local present = false
for i = 4, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
    present = true
    break
  end
end
if not present then return 0 end
if redis.call('HINCRBY', KEYS[1], 'a', 1) < tonumber(ARGV[1]) then return 0 end
for i = 4, #ARGV do
  local value = redis.call('HGET', KEYS[1], ARGV[i])
  if value then
    redis.call('HSET', KEYS[4], ARGV[i], value)
    redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
redis.call('HDEL', KEYS[1], 'a')
redis.call('RPUSH', KEYS[3], ARGV[2])
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.find(field, '^%d') then return 1 end
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[3])
return 1
