--[[ messages_expire.lua: turn records older than the retention window into tombstones.

Retention (INBOX_RETENTION_DAYS) drops the content of old messages but keeps what deduplication
needs: the record becomes a tombstone holding its digest h, a packed m with only the version,
direction, message time, as-of and status (no patient, no channels; first seen and last change
0), and the field e, when it expired. The blob r goes; any other field (the message's history,
which `metriport-inbox trace` shows) stays. The id leaves every index, so the mirror answers it
like Metriport answers an unknown id, and one `expired` feed entry announces it. Because h and m stay,
reconciliation and a late webhook of the same version find a duplicate instead of creating the
message again; a newer version is stored normally (see messages_upsert.lua).

The caller reads each record's routing first (to name its index keys) and passes what it read; a
record whose direction or patient changed since is left alone ("changed"), to be seen again by
the next run. Each call holds one bounded batch.

KEYS
  1   {ns}:feed                 stream
  2   {ns}:stats                hash    counters: expired, expired_bytes
  3   {ns}:idx:all              zset
  per message i, at b = 3 + 3*(i-1):
  b+1 {ns}:msg:<id>             hash    the record
  b+2 {ns}:idx:dir:<direction>  zset    (KEYS[3] when the record has no direction)
  b+3 {ns}:idx:patient:<pid>    zset    (KEYS[3] when the record has no patient)

ARGV
  1   now, ms   2 feed length cap   3 cutoff, ms: records whose newest time is older expire
  per message i, at b = 3 + 3*(i-1):
  b+1 id   b+2 direction read, or ""   b+3 patient read, or ""

A record's age is the later of its message time and its as-of (a status change within the window
keeps a message); a record without a message time counts from when it was first seen.
The packed field m is read through the prelude record.lua (layout in inbox/record.py).

Returns { outcomes, bytes }: outcomes[i] is "expired", "kept" (inside the window), "changed"
(routing differs from what was read) or "gone" (no record, or already expired or forgotten);
bytes is the size of the blobs removed.
]]

local feed, stats, idx_all = KEYS[1], KEYS[2], KEYS[3]
local now, maxlen, cutoff = ARGV[1], ARGV[2], tonumber(ARGV[3])

local n = (#KEYS - 3) / 3
if n ~= math.floor(n) or #ARGV ~= 3 + 3 * n then
  return redis.error_reply('ERR messages_expire: KEYS and ARGV do not describe the same batch')
end

local outcomes, expired, bytes = {}, 0, 0

for i = 1, n do
  local k, a = 3 + 3 * (i - 1), 3 + 3 * (i - 1)
  local msg, idx_dir, idx_patient = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  local id, read_direction, read_patient = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local m, gone = unpack(redis.call('HMGET', msg, 'm', 'e'))
  local outcome
  if not m or gone then
    outcome = 'gone'
  else
    local record = unpack_record(m)
    local version, direction, patient, status =
      record.version, record.direction, record.patient, record.status
    local age = math.max(tonumber(record.message_time) or tonumber(record.first_seen) or 0,
      tonumber(record.as_of) or 0)
    if age >= cutoff then
      outcome = 'kept'
    elseif direction ~= read_direction or patient ~= read_patient then
      outcome = 'changed'
    else
      outcome = 'expired'
      bytes = bytes + redis.call('HSTRLEN', msg, 'r')
      -- a new hash: with small values Redis keeps it in its compact encoding (a hash that once
      -- held the blob stays a hashtable, ~600 bytes instead of ~220)
      local fields, old = {}, redis.call('HGETALL', msg)
      for j = 1, #old, 2 do
        if old[j] ~= 'r' and old[j] ~= 'm' then
          fields[#fields + 1] = old[j]
          fields[#fields + 1] = old[j + 1]
        end
      end
      redis.call('DEL', msg)
      redis.call('HSET', msg, 'e', now, 'm', pack_record({
        version = version, direction = direction, patient = '',
        message_time = record.message_time, as_of = record.as_of, first_via = '', via = '',
        first_seen = 0, updated = 0, status = status }), unpack(fields))
      redis.call('ZREM', idx_all, id)
      if direction ~= '' then redis.call('ZREM', idx_dir, id) end
      if patient ~= '' then redis.call('ZREM', idx_patient, id) end
      redis.call('XADD', feed, 'MAXLEN', '~', maxlen, '*',
        'event', 'expired', 'id', id, 'via', 'retention', 'version', version,
        'direction', direction, 'patient', patient, 'status', status)
      expired = expired + 1
    end
  end
  outcomes[i] = outcome
end

if expired > 0 then
  redis.call('HINCRBY', stats, 'expired', expired)
  redis.call('HINCRBY', stats, 'expired_bytes', bytes)
end
return { outcomes, bytes }
