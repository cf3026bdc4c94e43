--[[ record_reseal.lua: replace a record's sealed resource and digest, if nobody changed it.

`rekey` reads a record, re-encrypts it under the ring's current key and writes it back with this
script. The write happens only when the record's digest is still the one that was read
(compare-and-set), so a version stored by a concurrent upsert is never overwritten with an older
one. Nothing else in the record changes: status, version and timestamps stay as they are.

KEYS
  1  {ns}:msg:<id>   hash   the record

ARGV
  1  digest read with the blob (the record's `h` field)
  2  new blob (field `r`)
  3  new digest (field `h`)

Returns 1 when replaced, 0 when the record changed or vanished since it was read (nothing written).
]]

local msg = KEYS[1]
local expected, blob, digest = ARGV[1], ARGV[2], ARGV[3]

if redis.call('HGET', msg, 'h') ~= expected then return 0 end
redis.call('HSET', msg, 'r', blob, 'h', digest)
return 1
