--[[ message_status.lua: apply a delivery status (message.status webhook) to a stored message.

The resource itself is kept as received; the record's status, version and as-of change, and one
`updated` feed entry announces it. The canonical resource follows through a fetch or the next
reconciliation (an API read wins an as-of tie, see record.lua).

KEYS
  1  {ns}:msg:<id>   hash    the record
  2  {ns}:feed       stream  feed
  3  {ns}:stats      hash    counters

ARGV
  1  id   2 via   3 now ms   4 feed length cap   5 status   6 as-of ms (the status time)

The record's packed field m and the rule for "newer" come from the prelude record.lua.

Returns "unknown" when no record exists (nothing written), else "updated", "duplicate" (same
status) or "stale" (older, or a terminal status going back).
]]

local msg, feed, stats = KEYS[1], KEYS[2], KEYS[3]
local id, via, now, maxlen, status, as_of = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]

local m, x, digest = unpack(redis.call('HMGET', msg, 'm', 'x', 'h'))
if not m then return 'unknown' end
local record = unpack_record(m)

local outcome
if record.status == status then
  outcome = 'duplicate'
elseif not is_newer(record.status, tonumber(record.as_of), status, tonumber(as_of), via) then
  outcome = 'stale'
else
  outcome = 'updated'
  record.version = tonumber(record.version) + 1
  if tonumber(as_of) > tonumber(record.as_of) then record.as_of = as_of end
  record.via, record.updated, record.status = via, now, status
  local feed_id = redis.call('XADD', feed, 'MAXLEN', '~', maxlen, '*',
    'event', 'updated', 'id', id, 'via', via, 'version', record.version,
    'direction', record.direction, 'patient', record.patient, 'status', status)
  redis.call('HSET', msg, 'm', pack_record(record), 'x', with_history(x, history_entry(now,
    'status', via, record.version, status, digest, feed_id, '')))
end
if outcome ~= 'updated' then
  redis.call('HSET', msg, 'x', with_history(x, history_entry(now, 'status-' .. outcome, via,
    record.version, status, digest, '', '')))
end
redis.call('HINCRBY', stats, outcome, 1)
redis.call('HINCRBY', stats, outcome .. ':' .. via, 1)
return outcome
