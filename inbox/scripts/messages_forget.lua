--[[ messages_forget.lua: remove a patient's records for good (`metriport-inbox forget`).

Each record of the patient is replaced by a marker hash holding only e = "forgotten": no content,
no digest, no patient, no times. Its index entries go. The marker keeps reconciliation (Metriport
still lists the message) and late webhooks from storing the message again: messages_upsert.lua
answers them "forgotten". The caller reads each record's routing first to name its index keys; a
record that meanwhile moved to another patient is left alone. The caller removes the feed entries
separately (inbox/forget.py).

KEYS
  1   {ns}:stats                hash    counter: forgotten_records
  2   {ns}:idx:all              zset
  per message i, at b = 2 + 3*(i-1):
  b+1 {ns}:msg:<id>             hash    the record
  b+2 {ns}:idx:dir:<direction>  zset    (KEYS[2] when the record has no direction)
  b+3 {ns}:idx:patient:<pid>    zset    the patient's index

ARGV
  1   patient id
  per message i, at b = 1 + 2*(i-1):
  b+1 id   b+2 direction read, or ""

The packed field m is read through the prelude record.lua (layout in inbox/record.py).
Returns a list: 1 where the record was forgotten, 0 where it was not the patient's (any more).
]]

local stats, idx_all, patient = KEYS[1], KEYS[2], ARGV[1]

local n = (#KEYS - 2) / 3
if n ~= math.floor(n) or #ARGV ~= 1 + 2 * n then
  return redis.error_reply('ERR messages_forget: KEYS and ARGV do not describe the same batch')
end

local done, count = {}, 0
for i = 1, n do
  local k, a = 2 + 3 * (i - 1), 1 + 2 * (i - 1)
  local msg, idx_dir, idx_patient = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  local id, direction = ARGV[a + 1], ARGV[a + 2]
  local m = redis.call('HGET', msg, 'm')
  if m and unpack_record(m).patient == patient then
    redis.call('DEL', msg)
    redis.call('HSET', msg, 'e', 'forgotten')
    redis.call('ZREM', idx_all, id)
    if direction ~= '' then redis.call('ZREM', idx_dir, id) end
    redis.call('ZREM', idx_patient, id)
    done[i] = 1
    count = count + 1
  else
    done[i] = 0
  end
end
if count > 0 then redis.call('HINCRBY', stats, 'forgotten_records', count) end
return done
