#!lua flags=allow-cross-slot-keys
--[[
  tombstone-node-1: tombstone-n for a Redis Cluster node: a batch of keys of many slots,
  all served by the node this call is sent to (the worker groups them by the slot table).
  Only KEYS[1] is declared: it routes the call; the flag lets the script reach the node's
  other keys (Redis 7). A key the node does not serve (a stale slot table) makes the call
  fail ("non local key"): the worker refreshes the table and retries the group; keys
  already tombstoned stay so (replays are harmless).

  KEYS[1]           the first entry key
  ARGV[1]           the tombstone: 'T' .. 16 hex digits of the LSN
  ARGV[2]           TTL in milliseconds
  ARGV[3]           the caller's clock, ms since the epoch (see tombstone-1)
  ARGV[4]           n, the number of keys (KEYS[1] included)
  ARGV[5 .. 3+n]    the other n - 1 entry keys
  ARGV[4+n .. 3+2n] the xids of each of the n keys, KEYS[1] first (see tombstone-1)

  Returns the number of keys written (kept data not counted)
]]
--#include fence
local now, n = tonumber(ARGV[3]) or 0, tonumber(ARGV[4])
local written = 0
for i = 1, n do
  local key = i == 1 and KEYS[1] or ARGV[3 + i]
  if tombstone(key, ARGV[1], ARGV[2], ARGV[3 + n + i] or '', now) == 1 then
    written = written + 1
  end
end
return written
