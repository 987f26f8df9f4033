-- The messaging limit: the unique users a portfolio messaged outside an open window in the
-- moving window (ARCHITECTURE §13).
-- KEYS[1] the portfolio's reach set (ZSET user → ms counted; hash tag of the portfolio)
-- ARGV[1] window ms, ARGV[2] limit, ARGV[3..] users
-- Returns { used, frees at ms (0: no one counted), per user: 0 counted already (now again),
-- the ms it was counted at (new), or -1 (full) }.
local window, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
local out = { 0, 0 }
for i = 3, #ARGV do
  local user = ARGV[i]
  local was = redis.call('ZSCORE', KEYS[1], user)
  if was then
    -- Counted again: later than before even within one ms, so that giving back the
    -- earlier reservation leaves this one.
    redis.call('ZADD', KEYS[1], 'XX', math.max(now, tonumber(was) + 1), user)
    out[#out + 1] = 0
  elseif used < limit then
    redis.call('ZADD', KEYS[1], now, user)
    used = used + 1
    out[#out + 1] = now
  else
    out[#out + 1] = -1
  end
end
if used > 0 then
  redis.call('PEXPIRE', KEYS[1], window)
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  out[2] = tonumber(first[2]) + window
end
out[1] = used
return out
