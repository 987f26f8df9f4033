-- Counts a reply once per recipient of a campaign.
-- KEYS[1] campaign meta
-- ARGV[1] key base, ARGV[2] dedupe bucket count, ARGV[3] phone digits
-- Returns 1 when counted now, 0 when already counted or not a recipient.
local base, nb, phone = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local seq = redis.call('HGET', base .. ':d:' .. int(tonumber(phone) % nb), phone)
if not seq then return 0 end
local r = get_job(base, seq)
if not r or has_flag(r, 'R') then return 0 end
r.fl = r.fl .. 'R'
put_job(base, seq, r)
redis.call('HINCRBY', base .. ':stats', 'replied', 1)
return 1
