--[[
  wb-read-n: the pending records of several rows in one call (a flush reads thousands;
  one script costs Redis and the client far less than a command per row).

  KEYS[1..n]  pending records

  Returns, per record, its fields and values as HGETALL gives them (empty: none)
]]
local out = {}
for i = 1, #KEYS do
  out[i] = redis.call('HGETALL', KEYS[i])
end
return out
