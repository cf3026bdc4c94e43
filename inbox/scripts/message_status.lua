--[[ message_status.lua: apply a delivery status (message.status webhook) to a stored message.

The resource itself is kept as received; the record's status, version and as-of change, and one
`updated` feed entry announces it. The stored resource no longer says the current status, so its
digest's shape rank becomes 0 (stale): the canonical resource, read by a fetch or the next
reconciliation with the same meaning, status and as-of, then replaces it without a second
announcement (see messages_upsert.lua).

KEYS
  1  {ns}:msg:<id>   hash    the record
  2  {ns}:feed       stream  feed
  3  {ns}:stats      hash    counters

ARGV
  1  id   2 via   3 now ms   4 feed length cap   5 status   6 as-of ms (the status time)

The record's packed field m, its history x and the rule for "newer" come from the prelude
record.lua; every status delivery to a stored record adds a history event (status,
status-duplicate, status-stale).

Returns "unknown" when no record exists (nothing written), and also for an expired record
(a tombstone, see messages_upsert.lua) whose status changes: its content is gone, so the caller
fetches the new version, which the upsert stores with its resource. "forgotten" for a forgotten
record; else "updated", "duplicate" (same status) or "stale" (older, or a terminal status going
back).
]]

local msg, feed, stats = KEYS[1], KEYS[2], KEYS[3]
local id, via, now, maxlen, status, as_of = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]

local m, gone, x, h = unpack(redis.call('HMGET', msg, 'm', 'e', 'x', 'h'))
if gone == 'forgotten' then
  redis.call('HINCRBY', stats, 'forgotten', 1)
  return 'forgotten'
end
if not m then return 'unknown' end
local record = unpack_record(m)
if gone and record.status ~= status then return 'unknown' end

local outcome
if same_status(record.status, status) then
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
    'status', via, record.version, status, h, feed_id, '')))
  local _, tag, hex = unpack_digest(h)
  if tag then redis.call('HSET', msg, 'h', '0' .. tag .. ':' .. hex) end
end
if outcome ~= 'updated' then
  redis.call('HSET', msg, 'x', with_history(x, history_entry(now, 'status-' .. outcome, via,
    record.version, status, h, '', '')))
end
redis.call('HINCRBY', stats, outcome, 1)
redis.call('HINCRBY', stats, outcome .. ':' .. via, 1)
return outcome
