--[[ messages_upsert.lua: record a batch of 1..N messages atomically.

For each message decide created / updated / duplicate / stale, and write the record, its
indexes, one feed entry per change and the counters together: a crash can never leave a record
without its feed entry, or the reverse. A webhook delivery passes its ledger key so that a
replayed delivery (same meta.messageId, same body hash) costs nothing, in the same round trip.
A reconciliation page passes its walk's checkpoint, counters and lock in the same call: the
page is stored, the checkpoint moved and the lock renewed in one round trip and one atomic step,
and only while the caller still holds the lock (a Redis Cluster client cannot pipeline scripts,
so these could not share a round trip any other way; all keys share the namespace's hash tag).

"Same message" is decided on its meaning, not its bytes: the digest of the meaning (see
inbox/normalize.py) equal, the status the same (or a synonym) and the as-of equal. Such a copy is
a duplicate: no version, no feed entry. It still replaces the stored representation when it is a
better one (a Communication over the SDK's flat object, anything over a resource a status webhook
made stale, or the same shape read under another digest key: re-sealed under the current key),
and a digest made under another tag is rewritten under the current one.
A stored digest whose tag none of the incoming digests has (written before tags, under a key no
longer in the ring, or in clear before keys were set) cannot be compared here: the outcome is
"recheck", nothing is written for that message, and the store compares the opened resources and
calls again with a marker among the digests: "=<shape><h>" (same meaning; the stored resource's
shape rank, 0 when it could not be opened) or "!<h>" (different meaning).

KEYS
  1   {ns}:feed                 stream  one entry per change: ids and routing fields only
  2   {ns}:stats                hash    counters shared by every process
  3   {ns}:idx:all              zset    every id, score 0, listed by id (BYLEX)
  4   {ns}:delivery:<deliveryId> string body hash of a webhook delivery (KEYS[2] when unused)
  5   {ns}:reconcile:cursor:<direction> string a walk's checkpoint (KEYS[2] when no page)
  6   {ns}:reconcile:lock        string the reconciliation lock (KEYS[2] when no page)
  per message i, at b = 6 + 3*(i-1):
  b+1 {ns}:msg:<id>             hash    the record (fields below)
  b+2 {ns}:idx:dir:<direction>  zset    (KEYS[3] when the direction is unknown)
  b+3 {ns}:idx:patient:<pid>    zset    (KEYS[3] when there is no patient)

ARGV
  1   via: webhook | reconcile | fetch
  2   now, milliseconds since the epoch
  3   feed length cap (approximate MAXLEN)
  4   delivery body hash, "" for no ledger
  5   delivery ledger TTL, seconds
  6   lock token of the walk, "" when this is not a reconciliation page
  7   lock time to live, ms
  8   checkpoint text to save, "" to delete the checkpoint (the walk ended)
  9   checkpoint time to live, ms
  10  more counters to add, "name,count,name,count" ("" for none)
  11  "changed" when the checkpoint is kept only if this page created or updated a message (an
      incremental walk stops after a page that changed nothing, and must then start afresh)
  per message i, at b = 11 + 3*(i-1):
  b+1 id   b+2 blob (stored resource)
  b+3 the message's other fields, "|"-joined (one argument instead of seven: each argument
      costs the client's packing and Redis's parsing, and a page sends 500 of each):
      digests "<tag>:<hex>", comma-joined, current first (then any "=" / "!" marker, see above)
      | shape rank (inbox.normalize.Shape) | direction or "" | patient id or "" | status or ""
      | message time ms or "" | as-of ms

Expired and forgotten records (see messages_expire.lua, messages_forget.lua) carry a field e.
An expired record (e = expiry time) is a tombstone: h and a slim m without the blob r, in no
index. The same version again is a duplicate (its blob is never written back); a newer one is
stored with its blob and indexed again, first seen anew. A forgotten record (e = "forgotten")
holds nothing else and takes no version again: outcome "forgotten".

Record fields: r blob, h "<shape><tag>:<hex>", m the rest packed (layouts in inbox/record.py,
read and written through the prelude record.lua, which also holds the rule for "newer"), x the
capped history (record.lua): every created, updated and stale version, and the deliveries,
replays and fetches that brought nothing new (reconcile duplicates are not written: every walk
sees them again; a forgotten record gets no history).

Errors (nothing written) when KEYS and ARGV disagree or an as-of is not a number.
Returns "lock_lost" (nothing written) when a page's lock token no longer holds the lock,
"replay" when the ledger already holds this delivery, else { outcomes, moved } where
outcomes[i] is the outcome of message i (or "recheck", or "forgotten") and moved lists id, old
patient pairs of
records whose patient changed (the caller removes them from the old patient index). With any
"recheck" neither the delivery ledger nor the checkpoint and its counters are written: the
call that settles them writes those. A page adds its created count to "repaired" and renews the
lock in every call.
]]

local feed, stats, idx_all, ledger, cursor, lock = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local via, now, maxlen = ARGV[1], ARGV[2], ARGV[3]
local body_hash, ledger_ttl = ARGV[4], ARGV[5]
local token, lock_ttl, checkpoint, checkpoint_ttl, counters = ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local keep_if = ARGV[11]

-- Index entries are gathered per sorted set and written with one ZADD each after the loop
-- (same script, so still atomic): a page of 500 makes a handful of ZADDs instead of 1,500.
local to_index, index_keys = {}, {}
local function index(key, id)
  local ids = to_index[key]
  if not ids then
    ids = {}
    to_index[key] = ids
    index_keys[#index_keys + 1] = key
  end
  ids[#ids + 1] = id
end

local function write_indexes()
  for _, key in ipairs(index_keys) do
    local ids, args = to_index[key], {}
    for i, id in ipairs(ids) do
      args[#args + 1] = 0
      args[#args + 1] = id
      if #args >= 1000 or i == #ids then  -- bounded arguments per call
        redis.call('ZADD', key, unpack(args))
        args = {}
      end
    end
  end
end

-- the delivery id, for the history (the ledger key is {ns}:delivery:<id>, built in Python)
local delivery = body_hash ~= '' and string.match(ledger, '^{[^}]*}:delivery:(.+)$') or ''

local function announce(event, id, version, direction, patient, status)
  return redis.call('XADD', feed, 'MAXLEN', '~', maxlen, '*',
    'event', event, 'id', id, 'via', via, 'version', version,
    'direction', direction, 'patient', patient, 'status', status)
end

-- How a stored digest h compares with the incoming digests: 'same', 'different' or 'unknown';
-- with 'same', the stored shape rank (from h, or from the store's marker).
local function compare(h, digests)
  local shape, tag, hex = unpack_digest(h)
  local stored = tag and (tag .. ':' .. hex)
  local comparable = false
  for entry in string.gmatch(digests, '[^,]+') do
    if entry == stored then return 'same', shape end
    if string.sub(entry, 1, 1) == '=' and string.sub(entry, 3) == h then
      return 'same', tonumber(string.sub(entry, 2, 2))
    end
    if entry == '!' .. h then return 'different' end
    if tag and string.match(entry, '^[^:]*') == tag then comparable = true end
  end
  return comparable and 'different' or 'unknown'
end

local n = (#KEYS - 6) / 3
if n ~= math.floor(n) or #ARGV ~= 11 + 3 * n then
  return redis.error_reply('ERR messages_upsert: KEYS and ARGV do not describe the same batch')
end
-- Split every message's fields and check every as-of before the first write: a script error
-- later would leave a partial batch. (No field holds a "|": ids, codes, digests and numbers.)
local FIELDS = '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)$'
local fields = {}
for i = 1, n do
  local f = { string.match(ARGV[11 + 3 * i], FIELDS) }
  if not tonumber(f[7]) or not tonumber(f[2]) then
    return redis.error_reply('ERR messages_upsert: as-of of message ' .. i .. ' is not a number')
  end
  fields[i] = f
end

if token ~= '' and redis.call('GET', lock) ~= token then
  return 'lock_lost'
end

if body_hash ~= '' then
  if redis.call('GET', ledger) == body_hash then
    redis.call('HINCRBY', stats, 'replay', 1)
    for i = 1, n do
      local msg = KEYS[6 + 3 * (i - 1) + 1]
      local old_digest, old_meta, x, gone = unpack(redis.call('HMGET', msg, 'h', 'm', 'x', 'e'))
      if old_meta and gone ~= 'forgotten' then
        local old = unpack_record(old_meta)
        redis.call('HSET', msg, 'x', with_history(x, history_entry(now, 'replay', via,
          old.version, old.status, old_digest, '', delivery)))
      end
    end
    return 'replay'
  end
end

local counts = { created = 0, updated = 0, duplicate = 0, stale = 0, recheck = 0, forgotten = 0 }
local outcomes, moved = {}, {}

for i = 1, n do
  local k, a = 6 + 3 * (i - 1), 11 + 3 * (i - 1)
  local msg, idx_dir, idx_patient = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  local id, blob = ARGV[a + 1], ARGV[a + 2]
  local digests, shape_text, direction, patient, status, message_time, as_of_text = unpack(fields[i])
  local shape, as_of = tonumber(shape_text), tonumber(as_of_text)
  local current = string.match(digests, '^[^,]+')
  local digest = shape .. current

  local old_digest, old_meta, gone, x = unpack(redis.call('HMGET', msg, 'h', 'm', 'e', 'x'))
  local outcome, same, old_shape
  if old_digest then same, old_shape = compare(old_digest, digests) end
  if gone == 'forgotten' then
    outcome = 'forgotten'
  elseif not old_digest then
    outcome = 'created'
    local feed_id = announce('created', id, 1, direction, patient, status)
    redis.call('HSET', msg, 'r', blob, 'h', digest, 'm', pack_record({
      version = 1, direction = direction, patient = patient, message_time = message_time,
      as_of = as_of_text, first_via = via, via = via, first_seen = now, updated = now,
      status = status }),
      'x', history_entry(now, 'created', via, 1, status, digest, feed_id, delivery))
    index(idx_all, id)
    if direction ~= '' then index(idx_dir, id) end
    if patient ~= '' then index(idx_patient, id) end
  elseif same == 'unknown' then
    outcome = 'recheck'
  else
    local old = unpack_record(old_meta)
    if same == 'same' and same_status(old.status, status) and tonumber(old.as_of) == as_of then
      outcome = 'duplicate'
      local _, old_tag = unpack_digest(old_digest)
      local retagged = old_tag ~= string.match(current, '^[^:]*')
      if not gone and (shape > old_shape or (shape == old_shape and retagged)) then
        redis.call('HSET', msg, 'r', blob, 'h', digest)
      elseif retagged then
        redis.call('HSET', msg, 'h', old_shape .. current)
      end
      if via ~= 'reconcile' then  -- every walk sees most messages again: only deliveries, fetches
        redis.call('HSET', msg, 'x', with_history(x, history_entry(now, 'duplicate', via,
          old.version, old.status, old_digest, '', delivery)))
      end
    elseif is_newer(old.status, tonumber(old.as_of), status, as_of, via) then
      outcome = 'updated'
      local version = tonumber(old.version) + 1
      if direction == '' then direction = old.direction end
      local first_via, first_seen = old.first_via, old.first_seen
      if gone then first_via, first_seen = via, now end  -- a tombstone keeps neither
      local feed_id = announce('updated', id, version, direction, patient, status)
      redis.call('HSET', msg, 'r', blob, 'h', digest, 'm', pack_record({
        version = version, direction = direction, patient = patient,
        message_time = message_time, as_of = as_of_text, first_via = first_via, via = via,
        first_seen = first_seen, updated = now, status = status }),
        'x', with_history(x, history_entry(now, 'updated', via, version, status, digest, feed_id,
          delivery)))
      if gone then  -- an expired record is back with a newer version: index it again
        redis.call('HDEL', msg, 'e')
        index(idx_all, id)
        if direction ~= '' then index(idx_dir, id) end
        if patient ~= '' then index(idx_patient, id) end
      elseif direction ~= '' and direction ~= old.direction then
        index(idx_dir, id)
      end
      if patient ~= old.patient and not gone then
        if patient ~= '' then index(idx_patient, id) end
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

write_indexes()
for outcome, count in pairs(counts) do
  if count > 0 and outcome ~= 'recheck' then
    redis.call('HINCRBY', stats, outcome, count)
    redis.call('HINCRBY', stats, outcome .. ':' .. via, count)
  end
end
if body_hash ~= '' and counts.recheck == 0 then
  redis.call('SET', ledger, body_hash, 'EX', ledger_ttl)
end
if token ~= '' then
  if counts.created > 0 then redis.call('HINCRBY', stats, 'repaired', counts.created) end
  if counts.recheck == 0 then
    local changed = counts.created + counts.updated > 0
    if checkpoint == '' or (keep_if == 'changed' and not changed) then
      redis.call('DEL', cursor)
    else
      redis.call('SET', cursor, checkpoint, 'PX', checkpoint_ttl)
    end
    local name
    for part in string.gmatch(counters, '[^,]+') do
      if name then
        redis.call('HINCRBY', stats, name, part)
        name = nil
      else
        name = part
      end
    end
  end
  redis.call('PEXPIRE', lock, lock_ttl)
end
return { outcomes, moved }
