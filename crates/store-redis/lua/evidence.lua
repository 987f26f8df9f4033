-- Records how far a phone number's webhooks have demonstrably caught up: the latest
-- acceptance time (ms) of a message whose status was applied (only ever raised), and when a
-- status last arrived long after its event (a backlog draining).
-- KEYS[1] the evidence key, KEYS[2] the backlog key (both with the phone number id's tag)
-- ARGV[1] an acceptance time ms (0: none), ARGV[2] 1 if a status lagged its event
-- Returns 1.
local at = tonumber(ARGV[1]) or 0
if at > (tonumber(redis.call('GET', KEYS[1]) or '0') or 0) then
  redis.call('SET', KEYS[1], ARGV[1])
end
if ARGV[2] == '1' then
  redis.call('SET', KEYS[2], int(now_ms()))
end
return 1
