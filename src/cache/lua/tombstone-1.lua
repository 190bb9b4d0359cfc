--[[
  tombstone-1: invalidate an entry for the commits that changed it (the rules are those
  of `tombstone` in lib/fence.lua). A data value filled under a snapshot that already
  shows every commit visible is kept; anything else becomes a tombstone, so a fill that
  began before the invalidation is refused unless its own snapshot proves it saw the
  commits. Invalidations may be replayed: the newest LSN is kept.

  KEYS[1]  the entry key
  ARGV[1]  the tombstone: 'T' .. 16 hex digits of the LSN ('T0000000000000000' locally)
  ARGV[2]  TTL in milliseconds: longer than the worst invalidation lag
  ARGV[3]  the 32-bit xids of the commits, comma-separated; '' or absent when unknown
           (a local delete): then no fill in flight may land
  ARGV[4]  the caller's clock, ms since the epoch (bounds how long a fence is waited for)

  Returns 1 written, 2 the data already held the commits (kept)
]]
--#include fence
return tombstone(KEYS[1], ARGV[1], ARGV[2], ARGV[3] or '', tonumber(ARGV[4]) or 0)
