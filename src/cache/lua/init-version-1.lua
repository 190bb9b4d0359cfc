--[[
  init-version-1: read a tag or epoch version, creating it when missing. Versions are
  unique strings, never counters: if Redis evicts one, the next read creates a new
  value, which invalidates every entry filled under the old one instead of reviving
  entries from before an earlier bump.

  KEYS[1]  the version key
  ARGV[1]  a fresh unique version, used only if the key is missing
  ARGV[2]  its time to live in ms when created (tag versions); 0 for none (the epoch)

  Returns the current version
]]
local current = redis.call('GET', KEYS[1])
if current then return current end
local ttl = tonumber(ARGV[2])
if ttl and ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
else
  redis.call('SET', KEYS[1], ARGV[1])
end
return ARGV[1]
