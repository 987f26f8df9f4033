-- Holds a campaign open for an upload in progress, or lets it go. A running campaign does not
-- complete while any upload's hold is live (see maybe_complete); a hold whose uploader died
-- lapses on its own.
-- KEYS[1] campaign meta
-- ARGV[1] key base, ARGV[2] upload token, ARGV[3] hold ms (0: release)
-- Returns 1, or HNOTFOUND, or HFINAL <status> for a new hold on a campaign that has ended.
local meta, base, token, hold = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
local uploads = base .. ':uploads'
if hold == 0 then
  redis.call('ZREM', uploads, token)
  return 1
end
local st = redis.call('HGET', meta, 'status')
if not st then return redis.error_reply('HNOTFOUND no such campaign') end
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', uploads, '-inf', now)
if (st == 'completed' or st == 'cancelled') and not redis.call('ZSCORE', uploads, token) then
  return redis.error_reply('HFINAL ' .. st)
end
redis.call('ZADD', uploads, now + hold, token)
return 1
