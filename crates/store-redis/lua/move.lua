-- Moves a planned send that woke late to now, when it really goes, if the number's window
-- allows; else takes it out of the log (it goes back to be planned again). See plan.lua.
--
-- Moving it from `old` to now adds it to the windows that hold now but not `old`: each lies
-- within [old, now + window), so it may move when that span holds at most `capacity` sends,
-- itself included. Those are the sends since `old` and the ones planned ahead, fewer than a
-- window's worth while the lateness plus the planning horizon is under the window.
-- KEYS[1] the number's log
-- ARGV[1] member, ARGV[2] capacity, ARGV[3] window µs
-- Returns the send's time µs (now, or its planned time if that has not come by the store's
-- clock), or 0 when it may not go (and it is out of the log).
local log, member = KEYS[1], ARGV[1]
local capacity, window = tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local old = redis.call('ZSCORE', log, member)
if not old then return 0 end
old = tonumber(old)
-- Not late by the store's clock (the two clocks differ by less than the guard): as planned.
if now <= old then return old end
if redis.call('ZCOUNT', log, old, '(' .. string.format('%.0f', now + window)) <= capacity then
  redis.call('ZADD', log, now, member)
  redis.call('PEXPIRE', log, math.max(redis.call('PTTL', log), math.floor(window / 1000) + 1000))
  return now
end
redis.call('ZREM', log, member)
return 0
