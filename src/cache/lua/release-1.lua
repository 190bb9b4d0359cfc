--[[
  release-1: give a lease back without filling (the load failed or returned nothing
  to cache), so waiting readers need not wait for it to expire. A refresh lease turns
  back into plain data.

  KEYS[1]  the entry key
  ARGV[1]  the lease prefix: 'L' .. token or 'R' .. token

  Returns 1 released, 0 the lease was no longer ours
]]
local current = redis.pcall('GET', KEYS[1])
if type(current) ~= 'string' or string.sub(current, 1, 17) ~= ARGV[1] then return 0 end
if string.sub(ARGV[1], 1, 1) == 'R' then
  redis.call('SET', KEYS[1], 'D' .. string.sub(current, 2), 'KEEPTTL')
else
  redis.call('DEL', KEYS[1])
end
return 1
