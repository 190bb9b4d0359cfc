--[[
  release-1: give a lease back without filling (the load failed or returned nothing
  to cache), so waiting readers need not wait for it to expire. A refresh lease turns
  back into plain data; a tombstone fenced for the lease is no longer fenced.

  KEYS[1]  the entry key
  ARGV[1]  the lease prefix: 'L' .. token or 'R' .. token
  ARGV[2]  the caller's clock, ms since the epoch

  Returns {released, waiters}: released 1 when the lease (or its fence) was ours;
  waiters 1 when other processes wait for this key (the caller tells them)
]]
--#include fence
local current = redis.pcall('GET', KEYS[1])
if type(current) ~= 'string' then return {0, 0} end
local waiters = has_waiters(current) and 1 or 0
if string.sub(current, 1, 17) == ARGV[1] then
  if string.sub(ARGV[1], 1, 1) == 'R' then
    redis.call('SET', KEYS[1], 'D' .. string.sub(current, 2), 'KEEPTTL')
  else
    redis.call('DEL', KEYS[1])
  end
  return {1, waiters}
end
if fenced_lease(current, tonumber(ARGV[2]) or 0) == ARGV[1] then
  redis.call('SET', KEYS[1], unfence(current), 'KEEPTTL')
  return {1, waiters}
end
return {0, 0}
