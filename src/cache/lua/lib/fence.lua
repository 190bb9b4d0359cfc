--[[
  fence: what the scripts of the L2 state machine share to fence fills by the database's
  own order (docs/consistency.md, "fills fenced by snapshots"). Included where a script
  says `--#include fence`.

  A snapshot is PostgreSQL's `pg_current_snapshot()` text, 'xmin:xmax:xip,xip,...' (64-bit
  transaction ids), taken before the load read the database. An xid list is the 32-bit
  ids of committed transactions that changed the key, comma-separated, as the worker
  decodes them from the WAL. A committed transaction is visible in a snapshot iff its id
  is below xmin, or below xmax and not in the xip list; once visible it is visible to
  every later snapshot, so what a snapshot taken before the load shows visible, the load
  saw.

  Values (first byte):
    L<token>[:<xids>][!]           lease; xids of tombstones it replaced; ! someone waits
    T<lsn>[/<lease>@<ms>][:<xids>][!]
                                   tombstone; /<lease>@<ms>: the 17-byte lease prefix
                                   (L<token>) that was in place, fenced until <ms> (its
                                   expiry by the invalidator's clock: a bound on how long
                                   it is waited for, not a safety rule): that fill may
                                   still land if its snapshot shows every xid visible
    D<token><envelope> / R<token><envelope>
                                   data; envelope format 2 holds the fill's snapshot at
                                   byte 48 (str8)
]]
local MAX_XIDS = 16

-- Every xid of `list` visible in `snapshot`? An empty or unreadable snapshot proves nothing.
local function all_visible(snapshot, list)
  if snapshot == nil or snapshot == '' then return false end
  local xmin, xmax, xip = string.match(snapshot, '^(%d+):(%d+):([%d,]*)$')
  if not xmin then return false end
  xmin, xmax = tonumber(xmin), tonumber(xmax)
  local running = {}
  for x in string.gmatch(xip, '%d+') do running[tonumber(x)] = true end
  local base = xmax - (xmax % 4294967296)
  for x in string.gmatch(list, '%d+') do
    -- The 64-bit id of a committed 32-bit xid: the one within 2^31 of xmax.
    local full = base + tonumber(x)
    if full > xmax + 2147483648 then
      full = full - 4294967296
    elseif full < xmax - 2147483648 then
      full = full + 4294967296
    end
    if not (full < xmin or (full < xmax and not running[full])) then return false end
  end
  return true
end

-- The snapshot a data value was filled under ('' for none: format 1, or a plain set).
local function data_snapshot(value)
  if string.byte(value, 18) ~= 2 or string.len(value) < 48 then return '' end
  local n = string.byte(value, 48)
  return string.sub(value, 49, 48 + n)
end

-- xids recorded in a lease or tombstone value ('' for none).
local function xids_of(value)
  return string.match(value, ':([%d,]+)') or ''
end

-- The two lists as one, oldest first, and whether it holds all of them: past MAX_XIDS
-- only the newest are kept (a lease fenced by such a list is not fenced: its fill is refused).
local function merge_xids(a, b)
  if a == '' then return b, true end
  if b == '' then return a, true end
  local out, seen, n = {}, {}, 0
  for x in string.gmatch(a .. ',' .. b, '%d+') do
    if not seen[x] then
      seen[x] = true
      n = n + 1
      out[n] = x
    end
  end
  if n <= MAX_XIDS then return table.concat(out, ','), true end
  return table.concat(out, ',', n - MAX_XIDS + 1, n), false
end

-- Someone waits for this lease (or fenced tombstone) to be filled.
local function has_waiters(value)
  local marker = string.sub(value, 1, 1)
  return (marker == 'L' or marker == 'T') and string.sub(value, -1) == '!'
end

-- The lease prefix a tombstone is fenced for, while its fence lasts (nil otherwise).
local function fenced_lease(value, now)
  if string.sub(value, 1, 1) ~= 'T' or string.sub(value, 18, 18) ~= '/' then return nil end
  local deadline = tonumber(string.match(value, '^@(%d+)', 36) or '0')
  if deadline <= now then return nil end
  return string.sub(value, 19, 35), deadline
end

-- A tombstone no longer fenced for any lease: the LSN, the xids and the waiter mark stay.
local function unfence(value)
  local out = string.sub(value, 1, 17)
  local xids = xids_of(value)
  if xids ~= '' then out = out .. ':' .. xids end
  if has_waiters(value) then out = out .. '!' end
  return out
end

--[[
  Invalidates one key for commits `xids` ('' when unknown) at tombstone `stone`
  ('T' .. 16 hex digits of the LSN). Data filled under a snapshot in which every one of
  the commits was already visible stays: it holds their effects. Anything else becomes a
  tombstone with the newest LSN, carrying the xids of the tombstones and lease it
  replaces; a lease in place stays fenced (its fill may land once its snapshot proves
  the commits seen) only when every commit is known.
  `now`: the caller's clock in ms (scripts do not read Redis's clock: an ACL user need
  not be allowed TIME, and clock skew only moves how long a fence is waited for).
  Returns 1 written, 2 the data was newer than the commits (kept).
]]
local function tombstone(key, stone, ttl, xids, now)
  local current = redis.pcall('GET', key)
  if type(current) ~= 'string' then current = '' end
  local marker = string.sub(current, 1, 1)
  if (marker == 'D' or marker == 'R') and xids ~= ''
      and all_visible(data_snapshot(current), xids) then
    return 2
  end
  local lsn, lease, deadline, inherited = stone, nil, 0, ''
  if marker == 'L' and string.len(current) >= 17 then
    local pttl = redis.call('PTTL', key)
    if pttl > 0 then lease, deadline = string.sub(current, 1, 17), now + pttl end
    inherited = xids_of(current)
  elseif marker == 'T' and string.len(current) >= 17 then
    if string.sub(current, 1, 17) > stone then lsn = string.sub(current, 1, 17) end
    lease, deadline = fenced_lease(current, now)
    inherited = xids_of(current)
  end
  local all, complete = merge_xids(inherited, xids)
  local out = lsn
  if lease and xids ~= '' and complete then out = out .. '/' .. lease .. '@' .. deadline end
  if all ~= '' then out = out .. ':' .. all end
  if has_waiters(current) then out = out .. '!' end
  redis.call('SET', key, out, 'PX', ttl)
  return 1
end
