--[[
  fill-1: store a loaded value if its lease is still in place, or if an invalidation
  replaced the lease with a tombstone fenced for it and the filler's snapshot shows
  every commit of that tombstone visible (the load saw them: it read the database after
  the snapshot was taken). Anything else is refused: the load may predate a commit.
  A lease inherits the xids of the tombstone it replaced: the snapshot must show those
  too (a commit is decoded from the WAL a moment before it becomes visible).

  KEYS[1]  the entry key
  ARGV[1]  the lease prefix: 'L' .. token (fill) or 'R' .. token (refresh)
  ARGV[2]  the new value ('D' .. token .. envelope)
  ARGV[3]  TTL in milliseconds
  ARGV[4]  the filler's snapshot (pg_current_snapshot() text taken before the load), or
           '' for a load that has none: then only an intact lease is filled
  ARGV[5]  the caller's clock, ms since the epoch

  Returns {code, waiters}: code 1 stored, 2 stored over a fenced tombstone, 0 refused;
  waiters 1 when other processes wait for this key (the caller tells them)
]]
--#include fence
local key, prefix, value, ttl, snapshot = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4] or ''
local now = tonumber(ARGV[5]) or 0
local current = redis.pcall('GET', key)
if type(current) ~= 'string' then return {0, 0} end
local waiters = has_waiters(current) and 1 or 0
if string.sub(current, 1, 17) == prefix then
  local inherited = string.sub(prefix, 1, 1) == 'L' and xids_of(current) or ''
  if snapshot ~= '' and inherited ~= '' and not all_visible(snapshot, inherited) then
    -- The load may predate a commit already invalidated: keep it invalidated.
    redis.call('SET', key, 'T0000000000000000:' .. inherited, 'PX', ttl)
    return {0, waiters}
  end
  redis.call('SET', key, value, 'PX', ttl)
  return {1, waiters}
end
if snapshot ~= '' and fenced_lease(current, now) == prefix then
  if all_visible(snapshot, xids_of(current)) then
    redis.call('SET', key, value, 'PX', ttl)
    return {2, waiters}
  end
  redis.call('SET', key, unfence(current), 'KEEPTTL')
  return {0, waiters}
end
return {0, 0}
