--[[ namespace_snapshot.lua: the closing, atomic step of a backup (inbox/backup.py).

A backup copies most keys in bounded batches while the service runs, then calls this script for
the keys that must agree with each other at one instant: the feed (its entries and its consumer
groups' positions and pending entries), the dead letters, the counters, and the records the feed
says changed since the batches began. The caller names the feed's newest entry id it saw; if the
feed moved on since, nothing is dumped and the caller tries again with the new changes.

KEYS
  1      {ns}:feed          stream
  2..n   keys to dump with it (dead letters, counters, changed records)

ARGV
  1      the feed's newest entry id the caller saw ("" for an empty or missing feed)

Returns { "moved", <newest id> } when the feed changed, else
{ "ok", <feed length>, dump 1, pttl 1, dump 2, pttl 2, ... } for KEYS in order (a missing key
dumps as false, pttl -2).
]]

local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local tip = newest[1] and newest[1][1] or ''
if tip ~= ARGV[1] then return { 'moved', tip } end

local reply = { 'ok', redis.call('XLEN', KEYS[1]) }
for i = 1, #KEYS do
  reply[#reply + 1] = redis.call('DUMP', KEYS[i])
  reply[#reply + 1] = redis.call('PTTL', KEYS[i])
end
return reply
