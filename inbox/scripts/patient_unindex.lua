--[[ patient_unindex.lua: drop a message id from a patient index it has left.

messages_upsert.lua reports records whose patient changed; the old patient's index key is only
known then, so the caller removes the id in this second call. Checking the record first keeps a
concurrent move back to the old patient from losing its index entry.

KEYS
  1  {ns}:msg:<id>                 hash  the record
  2  {ns}:idx:patient:<old pid>    zset  the index the record left

ARGV
  1  id   2 old patient id

The record's packed field m is read through the prelude record.lua.

Returns 1 when the id was removed, 0 when the record is (again) that patient's.
]]

local msg, idx_patient = KEYS[1], KEYS[2]
local id, old_patient = ARGV[1], ARGV[2]

local m = redis.call('HGET', msg, 'm')
if m and unpack_record(m).patient == old_patient then return 0 end
return redis.call('ZREM', idx_patient, id)
