-- Claims, or renews, the lead of a role: one holder at a time, for a lease that lapses unless
-- renewed.
-- KEYS[1] the role's key
-- ARGV[1] holder, ARGV[2] lease ms
-- Returns 1 when the holder leads, 0 otherwise.
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] or not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
  return 1
end
return 0
