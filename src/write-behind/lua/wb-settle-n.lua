--[[
  wb-settle-n: removes fields of pending records: writes a flush or a repository write
  applied (or superseded), fences whose transaction is over, the attempt counter. Exactly
  the fields named, so a write accepted meanwhile stays. A record left without writes is
  deleted and leaves the queue; one that keeps writes it did not name is re-queued at
  `taken` when it lost writes (every write left arrived after the caller read the record).

  KEYS[1]     the entity's queue
  KEYS[1+i]   the i-th pending record
  ARGV[1]     taken: when the caller read the records, ms
  then, per record: its row key (queue member), the number of fields c, and c field names

  Returns the number of records deleted
]]
local taken = ARGV[1]
local pos = 2
local deleted = 0
for i = 2, #KEYS do
  local member = ARGV[pos]
  local count = tonumber(ARGV[pos + 1])
  local lostWrite = false
  for j = pos + 2, pos + 1 + count do
    if redis.call('HDEL', KEYS[i], ARGV[j]) == 1 and string.find(ARGV[j], '^%d') then
      lostWrite = true
    end
  end
  pos = pos + 2 + count
  local writes = false
  for _, field in ipairs(redis.call('HKEYS', KEYS[i])) do
    if string.find(field, '^%d') then
      writes = true
      break
    end
  end
  if not writes then
    redis.call('DEL', KEYS[i])
    redis.call('ZREM', KEYS[1], member)
    deleted = deleted + 1
  elseif lostWrite then
    redis.call('ZADD', KEYS[1], 'XX', taken, member)
  end
end
return deleted
