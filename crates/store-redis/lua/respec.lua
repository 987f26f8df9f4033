-- Replaces a campaign's spec, unless the campaign has ended.
-- KEYS[1] campaign meta
-- ARGV[1] the spec, as JSON
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return redis.error_reply('HNOTFOUND no such campaign') end
if st == 'completed' or st == 'cancelled' then return redis.error_reply('HFINAL ' .. st) end
redis.call('HSET', KEYS[1], 'spec', ARGV[1])
return 1
