--[[ lock_renew.lua: extend a lock's expiry, only for the owner that holds it.

KEYS
  1   the lock key          string  the owner's random token
ARGV
  1   token of the caller
  2   new time to live, milliseconds

Returns 1 when the caller owns the lock (expiry extended), 0 when it does not (lost or taken).
]]

if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
