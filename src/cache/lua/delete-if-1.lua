--[[
  delete-if-1: delete an entry only if it still holds the fill the caller read
  (used to drop a corrupt entry without racing a fresh fill).

  KEYS[1]  the entry key
  ARGV[1]  the first 17 bytes of the value the caller read

  Returns 1 deleted, 0 the entry had changed
]]
local current = redis.pcall('GET', KEYS[1])
if type(current) == 'string' and string.sub(current, 1, 17) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
