-- Gives back a pair reservation (see pair.lua) when Meta refused the send it was made for:
-- the next send to that recipient need not wait out the interval. Only the reservation of
-- the given campaign is given back; the campaign stays remembered for reply attribution.
-- KEYS[1] pair key; ARGV[1] campaign id
-- Returns 1 if it was given back.
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local nb, campaign = string.match(v, '^(%d+):(.*)$')
if campaign ~= ARGV[1] or tonumber(nb) == 0 then return 0 end
redis.call('SET', KEYS[1], '0:' .. campaign, 'KEEPTTL')
return 1
