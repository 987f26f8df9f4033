-- The shared per-phone-number rate limiter (GCRA). Grants up to ARGV[2] send slots, spaced
-- ARGV[1] microseconds apart, none later than ARGV[3] microseconds from now. All workers
-- share the theoretical arrival time in KEYS[1], so together they never exceed one send per
-- interval.
-- KEYS[1] the limiter's key (hash tag of the phone number id)
-- ARGV[1] interval us, ARGV[2] slots wanted, ARGV[3] horizon us
-- Returns { granted, first slot us, interval us, now us } (store clock).
local interval, want, horizon = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local granted = 0
if tat <= now + horizon then
  granted = math.min(want, math.floor((now + horizon - tat) / interval) + 1)
end
if granted > 0 then
  local next_tat = tat + granted * interval
  -- Expire the key once it is in the past; it only matters while ahead of now.
  local ttl_ms = math.floor((next_tat - now) / 1000) + 1000
  redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', ttl_ms)
end
return { granted, tat, interval, now }
