--[[ lock_release.lua: delete a lock, only for the owner that holds it (compare-and-delete).

A run that was asked to walk again while it held the lock (a webhook's immediate run found it
held and left a request, KEYS[2]) can release with ARGV[2] = "handoff": then, if a request is
there, it is taken (deleted) and the lock kept, in the same atomic step, so a request made while
the run ends is either seen here or finds the lock free; it is never lost between the two.

KEYS
  1   the lock key                string  the owner's random token
  2   {ns}:reconcile:again        string  a request for one more walk (KEYS[1] when unused)
ARGV
  1   token of the caller
  2   "handoff" to take a pending request instead of releasing, "" otherwise

Returns 1 when the caller owned the lock and deleted it, 2 when it took a request and keeps the
lock, 0 otherwise (expired, or another owner's lock that must not be touched).
]]

if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == 'handoff' and redis.call('DEL', KEYS[2]) == 1 then
  return 2
end
return redis.call('DEL', KEYS[1])
