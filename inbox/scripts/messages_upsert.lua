--[[ messages_upsert.lua: record a batch of 1..N messages atomically.

For each message decide created / updated / duplicate / stale, and write the record, its
indexes, one feed entry per change and the counters together: a crash can never leave a record
without its feed entry, or the reverse. A webhook delivery passes its ledger key so that a
replayed delivery (same meta.messageId, same body hash) costs nothing, in the same round trip.

KEYS
  1   {ns}:feed                 stream  one entry per change: ids and routing fields only
  2   {ns}:stats                hash    counters shared by every process
  3   {ns}:idx:all              zset    every id, score 0, listed by id (BYLEX)
  4   {ns}:delivery:<deliveryId> string body hash of a webhook delivery (KEYS[2] when unused)
  per message i, at b = 4 + 3*(i-1):
  b+1 {ns}:msg:<id>             hash    the record (fields below)
  b+2 {ns}:idx:dir:<direction>  zset    (KEYS[3] when the direction is unknown)
  b+3 {ns}:idx:patient:<pid>    zset    (KEYS[3] when there is no patient)

ARGV
  1   via: webhook | reconcile | fetch
  2   now, milliseconds since the epoch
  3   feed length cap (approximate MAXLEN)
  4   delivery body hash, "" for no ledger
  5   delivery ledger TTL, seconds
  per message i, at b = 5 + 8*(i-1):
  b+1 id   b+2 blob (stored resource)   b+3 digests, comma-joined, current first
  b+4 direction or ""   b+5 patient id or ""   b+6 status or ""
  b+7 message time ms or ""   b+8 as-of ms

Record fields: r blob, h digest, m the rest packed (layout in inbox/record.py, read and written
through the prelude record.lua, which also holds the rule for "newer"), x the capped history
(record.lua): every created, updated and stale version, and deliveries, replays and fetches
that brought nothing new (reconcile duplicates are not written: every walk sees them again).

Errors (nothing written) when KEYS and ARGV disagree or an as-of is not a number.
Returns "replay" when the ledger already holds this delivery, else { outcomes, moved } where
outcomes[i] is the outcome of message i and moved lists id, old patient pairs of records whose
patient changed (the caller removes them from the old patient index).
]]

local feed, stats, idx_all, ledger = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local via, now, maxlen = ARGV[1], ARGV[2], ARGV[3]
local body_hash, ledger_ttl = ARGV[4], ARGV[5]

-- the delivery id, for the history (the ledger key is {ns}:delivery:<id>, built in Python)
local delivery = body_hash ~= '' and string.match(ledger, '^{[^}]*}:delivery:(.+)$') or ''

local function announce(event, id, version, direction, patient, status)
  return redis.call('XADD', feed, 'MAXLEN', '~', maxlen, '*',
    'event', event, 'id', id, 'via', via, 'version', version,
    'direction', direction, 'patient', patient, 'status', status)
end

local n = (#KEYS - 4) / 3
if n ~= math.floor(n) or #ARGV ~= 5 + 8 * n then
  return redis.error_reply('ERR messages_upsert: KEYS and ARGV do not describe the same batch')
end
-- Check every as-of before the first write: a script error later would leave a partial batch.
for i = 1, n do
  if not tonumber(ARGV[5 + 8 * i]) then
    return redis.error_reply('ERR messages_upsert: as-of of message ' .. i .. ' is not a number')
  end
end

if body_hash ~= '' then
  if redis.call('GET', ledger) == body_hash then
    redis.call('HINCRBY', stats, 'replay', 1)
    for i = 1, n do
      local msg = KEYS[4 + 3 * (i - 1) + 1]
      local old_digest, old_meta, x = unpack(redis.call('HMGET', msg, 'h', 'm', 'x'))
      if old_meta then
        local old = unpack_record(old_meta)
        redis.call('HSET', msg, 'x', with_history(x, history_entry(now, 'replay', via,
          old.version, old.status, old_digest, '', delivery)))
      end
    end
    return 'replay'
  end
end

local counts = { created = 0, updated = 0, duplicate = 0, stale = 0 }
local outcomes, moved = {}, {}

for i = 1, n do
  local k, a = 4 + 3 * (i - 1), 5 + 8 * (i - 1)
  local msg, idx_dir, idx_patient = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  local id, blob, digests = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local direction, patient, status = ARGV[a + 4], ARGV[a + 5], ARGV[a + 6]
  local message_time, as_of_text = ARGV[a + 7], ARGV[a + 8]
  local as_of = tonumber(as_of_text)
  local digest = string.match(digests, '^[^,]+')

  local old_digest, old_meta, x = unpack(redis.call('HMGET', msg, 'h', 'm', 'x'))
  local outcome
  if not old_digest then
    outcome = 'created'
    local feed_id = announce('created', id, 1, direction, patient, status)
    redis.call('HSET', msg, 'r', blob, 'h', digest, 'm', pack_record({
      version = 1, direction = direction, patient = patient, message_time = message_time,
      as_of = as_of_text, first_via = via, via = via, first_seen = now, updated = now,
      status = status }),
      'x', history_entry(now, 'created', via, 1, status, digest, feed_id, delivery))
    redis.call('ZADD', idx_all, 0, id)
    if direction ~= '' then redis.call('ZADD', idx_dir, 0, id) end
    if patient ~= '' then redis.call('ZADD', idx_patient, 0, id) end
  elseif string.find(',' .. digests .. ',', ',' .. old_digest .. ',', 1, true) then
    outcome = 'duplicate'
    if via ~= 'reconcile' then  -- every walk sees most messages again: only deliveries and fetches
      local old = unpack_record(old_meta)
      redis.call('HSET', msg, 'x', with_history(x, history_entry(now, 'duplicate', via,
        old.version, old.status, old_digest, '', delivery)))
    end
  else
    local old = unpack_record(old_meta)
    if is_newer(old.status, tonumber(old.as_of), status, as_of, via) then
      outcome = 'updated'
      local version = tonumber(old.version) + 1
      if direction == '' then direction = old.direction end
      local feed_id = announce('updated', id, version, direction, patient, status)
      redis.call('HSET', msg, 'r', blob, 'h', digest, 'm', pack_record({
        version = version, direction = direction, patient = patient,
        message_time = message_time, as_of = as_of_text, first_via = old.first_via, via = via,
        first_seen = old.first_seen, updated = now, status = status }),
        'x', with_history(x, history_entry(now, 'updated', via, version, status, digest, feed_id,
          delivery)))
      if direction ~= '' and direction ~= old.direction then redis.call('ZADD', idx_dir, 0, id) end
      if patient ~= old.patient then
        if patient ~= '' then redis.call('ZADD', idx_patient, 0, id) end
        if old.patient ~= '' then
          moved[#moved + 1] = id
          moved[#moved + 1] = old.patient
        end
      end
    else
      outcome = 'stale'
      redis.call('HSET', msg, 'x', with_history(x, history_entry(now, 'stale', via, old.version,
        status, digest, '', delivery)))
    end
  end
  outcomes[i] = outcome
  counts[outcome] = counts[outcome] + 1
end

for outcome, count in pairs(counts) do
  if count > 0 then
    redis.call('HINCRBY', stats, outcome, count)
    redis.call('HINCRBY', stats, outcome .. ':' .. via, count)
  end
end
if body_hash ~= '' then
  redis.call('SET', ledger, body_hash, 'EX', ledger_ttl)
end
return { outcomes, moved }
