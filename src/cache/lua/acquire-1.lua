--[[
  acquire-1: take the fill lease of a cache entry, or read what it holds.
  One key only (Redis Cluster safe).

  KEYS[1]  the entry key
  ARGV[1]  the lease token (16 characters)
  ARGV[2]  lease TTL in milliseconds
  ARGV[3]  replace prefix: '' or the first 17 bytes of a data value the caller found
           stale or corrupt; only that exact fill may be replaced
  ARGV[4]  mode: 'fill' (take the key) or 'refresh' (mark the data as being
           refreshed and keep serving it)
  ARGV[5]  the caller's clock, ms since the epoch (is a fenced tombstone still waited for)

  Returns
    {1}          lease taken
    {2, pttl}    another process holds a lease (or, in refresh mode, is refreshing)
    {3, value}   data is there (someone filled it meanwhile): the value, so no second GET
    {0}          refresh mode only: the entry changed since it was read; nothing to do
]]
--#include fence
local key, token, ttl, replace, mode = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local value = redis.pcall('GET', key)
if type(value) == 'table' and value.err then
  -- another type of key sits here: foreign data, not ours to keep
  if mode == 'refresh' then return {0} end
  redis.call('DEL', key)
  value = false
end
value = value or ''

local marker = string.sub(value, 1, 1)

if mode == 'refresh' then
  if marker == 'R' then return {2, redis.call('PTTL', key)} end
  if marker == 'D' and string.sub(value, 1, 17) == replace then
    redis.call('SET', key, 'R' .. token .. string.sub(value, 18), 'KEEPTTL')
    if redis.call('PTTL', key) < tonumber(ttl) then redis.call('PEXPIRE', key, ttl) end
    return {1}
  end
  return {0}
end

if marker == 'L' then
  -- Held: mark that someone waits, so the filler tells the waiters when it is done.
  if string.sub(value, -1) ~= '!' then redis.call('SET', key, value .. '!', 'KEEPTTL') end
  return {2, redis.call('PTTL', key)}
end
local now = tonumber(ARGV[5]) or 0
local _, deadline = fenced_lease(value, now)
if deadline then
  -- Invalidated during a load whose fill may still land (fenced): wait for it too.
  if string.sub(value, -1) ~= '!' then redis.call('SET', key, value .. '!', 'KEEPTTL') end
  return {2, deadline - now}
end
if (marker == 'D' or marker == 'R') and string.sub(value, 1, 17) ~= replace then return {3, value} end
-- empty, tombstone, foreign bytes, or the stale/corrupt fill the caller named. The lease
-- inherits the xids of a tombstone: its fill must prove it saw those commits.
local lease = 'L' .. token
if marker == 'T' then
  local xids = xids_of(value)
  if xids ~= '' then lease = lease .. ':' .. xids end
end
redis.call('SET', key, lease, 'PX', ttl)
return {1}
