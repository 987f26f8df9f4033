-- Moves planned sends that woke after their latest time to now, when they really go, each if
-- the number's window allows; else takes it out of the log (it goes back to be planned
-- again). See plan.lua.
--
-- A moved send may go from now until `slack` after it (`room_slack` while the span below
-- holds less than half the capacity), and the sends after it are spaced from now. That adds
-- it to the windows that hold a time in that span but not `old`: each lies within
-- [old, latest + window), so it may move when that span holds at most `capacity` sends,
-- itself included. Those are the sends since `old` and the ones planned ahead, fewer than a
-- window's worth while the lateness plus the planning horizon is under the window. The
-- sends are moved in order, each counting those moved before it.
-- KEYS[1] the number's log, KEYS[2] the last send's time
-- ARGV[1] capacity, ARGV[2] window µs, ARGV[3] slack µs, ARGV[4] room slack µs,
-- ARGV[5..] members
-- Returns per member the latest time µs it may now go (its old one, if that has not passed
-- by the store's clock), or 0 when it may not go (and it is out of the log).
local log, last_key = KEYS[1], KEYS[2]
local capacity, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local slack, room_slack = tonumber(ARGV[3]), math.max(tonumber(ARGV[3]), tonumber(ARGV[4]))
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out, moved = {}, false
-- The sends logged from `from` to a window after `latest`.
local function span(from, latest)
  return redis.call('ZCOUNT', log, from, '(' .. string.format('%.0f', latest + window))
end
for i = 5, #ARGV do
  local member = ARGV[i]
  local old = redis.call('ZSCORE', log, member)
  if not old then
    out[#out + 1] = 0
  else
    old = tonumber(old)
    if now <= old then
      -- Not late by the store's clock (the two clocks differ by less than the guard).
      out[#out + 1] = old
    else
      local latest = now + room_slack
      if span(old, latest) * 2 >= capacity then latest = now + slack end
      if span(old, latest) <= capacity then
        redis.call('ZADD', log, latest, member)
        out[#out + 1] = latest
        moved = true
      else
        redis.call('ZREM', log, member)
        out[#out + 1] = 0
      end
    end
  end
end
if moved then
  local ttl = math.max(redis.call('PTTL', log), math.floor(window / 1000) + 1000)
  redis.call('PEXPIRE', log, ttl)
  local last = tonumber(redis.call('GET', last_key) or '0') or 0
  if now > last then
    redis.call('SET', last_key, string.format('%.0f', now), 'PX', ttl)
  end
end
return out
