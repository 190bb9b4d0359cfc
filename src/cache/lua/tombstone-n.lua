--[[
  tombstone-n: tombstone-1 over a batch of keys, for the worker (one call instead of one
  per key), each key with the xids of its own commits. Used on a standalone Redis only:
  on Redis Cluster the worker sends tombstone-node-1 per node (keys of one call must
  share a slot unless the script says otherwise).

  KEYS[1..n]    entry keys
  ARGV[1]       the tombstone: 'T' .. 16 hex digits of the LSN
  ARGV[2]       TTL in milliseconds
  ARGV[3]       the caller's clock, ms since the epoch (see tombstone-1)
  ARGV[3 + i]   the xids of KEYS[i] (see tombstone-1); absent: unknown

  Returns the number of keys written (kept data not counted)
]]
--#include fence
local written, now = 0, tonumber(ARGV[3]) or 0
for i = 1, #KEYS do
  if tombstone(KEYS[i], ARGV[1], ARGV[2], ARGV[3 + i] or '', now) == 1 then
    written = written + 1
  end
end
return written
