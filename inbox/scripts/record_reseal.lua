--[[ record_reseal.lua: replace records' sealed resources and digests, where nobody changed them.

`rekey` reads records, re-encrypts them under the ring's current key and writes them back with
this script, a batch per call (one call, not a pipeline of calls: Redis Cluster clients refuse
to pipeline scripts). Each write happens only when the record's digest is still the one that was
read (compare-and-set), so a version stored by a concurrent upsert is never overwritten with an
older one. Nothing else in the record changes: status, version and timestamps stay as they are.

KEYS
  i  {ns}:msg:<id>   hash   the record i

ARGV, per record i at b = 3*(i-1):
  b+1  digest read with the blob (the record's `h` field)
  b+2  new blob (field `r`)
  b+3  new digest (field `h`)

Returns one number per record: 1 when replaced, 0 when it changed or vanished since it was read.
]]

if #ARGV ~= 3 * #KEYS then
  return redis.error_reply('ERR record_reseal: KEYS and ARGV do not describe the same batch')
end
local replaced = {}
for i, msg in ipairs(KEYS) do
  local b = 3 * (i - 1)
  if redis.call('HGET', msg, 'h') == ARGV[b + 1] then
    redis.call('HSET', msg, 'r', ARGV[b + 2], 'h', ARGV[b + 3])
    replaced[i] = 1
  else
    replaced[i] = 0
  end
end
return replaced
