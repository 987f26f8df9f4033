-- Moves planned sends that woke late to now, when they really go, each if the number's
-- window allows; else takes it out of the log (it goes back to be planned again). See
-- plan.lua.
--
-- Moving a send from `old` to now adds it to the windows that hold now but not `old`: each
-- lies within [old, now + window), so it may move when that span holds at most `capacity`
-- sends, itself included. Those are the sends since `old` and the ones planned ahead, fewer
-- than a window's worth while the lateness plus the planning horizon is under the window.
-- The sends are moved in order, each counting those moved before it.
-- KEYS[1] the number's log
-- ARGV[1] capacity, ARGV[2] window µs, ARGV[3..] members
-- Returns per member the send's time µs (now, or its planned time if that has not come by
-- the store's clock), or 0 when it may not go (and it is out of the log).
local log = KEYS[1]
local capacity, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out, moved = {}, false
for i = 3, #ARGV do
  local member = ARGV[i]
  local old = redis.call('ZSCORE', log, member)
  if not old then
    out[#out + 1] = 0
  else
    old = tonumber(old)
    if now <= old then
      -- Not late by the store's clock (the two clocks differ by less than the guard).
      out[#out + 1] = old
    elseif redis.call('ZCOUNT', log, old, '(' .. string.format('%.0f', now + window)) <= capacity then
      redis.call('ZADD', log, now, member)
      out[#out + 1] = now
      moved = true
    else
      redis.call('ZREM', log, member)
      out[#out + 1] = 0
    end
  end
end
if moved then
  redis.call('PEXPIRE', log, math.max(redis.call('PTTL', log), math.floor(window / 1000) + 1000))
end
return out
