--[[ message_status.lua: apply a delivery status (message.status webhook) to a stored message.

The resource itself is kept as received; the record's status, version and as-of change, and one
`updated` feed entry announces it. The canonical resource follows through a fetch or the next
reconciliation (an API read wins an as-of tie, see messages_upsert.lua).

KEYS
  1  {ns}:msg:<id>   hash    the record
  2  {ns}:feed       stream  feed
  3  {ns}:stats      hash    counters

ARGV
  1  id   2 via   3 now ms   4 feed length cap   5 status   6 as-of ms (the status time)

The record's packed field m is described in messages_upsert.lua.

Returns "unknown" when no record exists (nothing written), and also for an expired record
(a tombstone, see messages_upsert.lua) whose status changes: its content is gone, so the caller
fetches the new version, which the upsert stores with its resource. "forgotten" for a forgotten
record; else "updated", "duplicate" (same status) or "stale" (older, or a terminal status going
back).
]]

local msg, feed, stats = KEYS[1], KEYS[2], KEYS[3]
local id, via, now, maxlen, status, as_of = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]

local TERMINAL = {
  ['completed'] = true, ['failed'] = true, ['entered-in-error'] = true,
  ['stopped'] = true, ['not-done'] = true,
}

local m, gone = unpack(redis.call('HMGET', msg, 'm', 'x'))
if gone == 'forgotten' then
  redis.call('HINCRBY', stats, 'forgotten', 1)
  return 'forgotten'
end
if not m then return 'unknown' end
local old_version, direction, patient, message_time, old_as_of, first_via, _, first_seen, _,
  old_status = string.match(m, '^' .. string.rep('([^|]*)|', 9) .. '(.*)$')
if gone and old_status ~= status then return 'unknown' end

local outcome
local old_terminal, terminal = TERMINAL[old_status] or false, TERMINAL[status] or false
if old_status == status then
  outcome = 'duplicate'
elseif old_terminal and not terminal then
  outcome = 'stale'
elseif old_terminal == terminal and tonumber(as_of) <= tonumber(old_as_of) then
  outcome = 'stale'
else
  outcome = 'updated'
  local version = tonumber(old_version) + 1
  local newest = tonumber(as_of) > tonumber(old_as_of) and as_of or old_as_of
  redis.call('HSET', msg, 'm', table.concat({version, direction, patient, message_time, newest,
    first_via, via, first_seen, now, status}, '|'))
  redis.call('XADD', feed, 'MAXLEN', '~', maxlen, '*',
    'event', 'updated', 'id', id, 'via', via, 'version', version,
    'direction', direction, 'patient', patient, 'status', status)
end
redis.call('HINCRBY', stats, outcome, 1)
redis.call('HINCRBY', stats, outcome .. ':' .. via, 1)
return outcome
