-- Remembers the number business-scoped user ids stand for; a user who opted out while known
-- only by their id is suppressed by number now.
-- KEYS[1] users hash (user id → number), KEYS[2] unlinked opt-outs set, KEYS[3] suppression
-- set, KEYS[4] suppression reasons hash (all with the phone number id's hash tag)
-- ARGV[1] the reason to record ("<ms>|<reason>"), then pairs: user id, number
-- Returns how many users were suppressed.
local suppressed = 0
for i = 2, #ARGV, 2 do
  local user, phone = ARGV[i], ARGV[i + 1]
  redis.call('HSET', KEYS[1], user, phone)
  if redis.call('SREM', KEYS[2], user) == 1 then
    redis.call('SADD', KEYS[3], phone)
    redis.call('HSETNX', KEYS[4], phone, ARGV[1])
    suppressed = suppressed + 1
  end
end
return suppressed
