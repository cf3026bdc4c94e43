--[[ lock_release.lua: delete a lock, only for the owner that holds it (compare-and-delete).

KEYS
  1   the lock key          string  the owner's random token
ARGV
  1   token of the caller

Returns 1 when the caller owned the lock and deleted it, 0 otherwise (expired, or another
owner's lock that must not be touched).
]]

if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
