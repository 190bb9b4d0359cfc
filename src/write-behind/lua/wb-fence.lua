--[[
  wb-fence: marks the writes a repository transaction applied (or superseded) inside it:
  field `x:<xid>` = the highest sequence number it read. Once that transaction commits,
  every write up to that number is spent; if it aborts, the fence means nothing. Readers
  and flushes ask PostgreSQL which (pg_xact_status), so a process killed between its
  commit and clearing the writes (wb-settle-n) cannot let a flush undo it.

  KEYS[1]  the pending record
  ARGV[1]  the fence field, `x:<xid>`
  ARGV[2]  the highest sequence number covered

  Returns 1 when set, 0 when the record is gone (nothing left to fence)
]]
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
