-- Plans send times from a phone number's shared limiter and the capped campaigns' own (GCRA
-- each: a theoretical arrival time, µs). In order, each send takes the number's next slot,
-- provided its campaign's limiter has a slot by then; a send whose campaign has none yet is
-- passed over (and takes a later slot of this plan once its campaign's has come), and the
-- sends after it go on. No slot beyond now + horizon, at most `max` granted. All workers share
-- these keys, so together they never exceed either rate. (The memory backend keeps the same
-- rule in src/memory/mod.rs.)
-- KEYS[1] the number's limiter, KEYS[2..] capped campaigns' limiters (all with the phone
--   number id's hash tag)
-- ARGV[1] number interval µs, ARGV[2] horizon µs, ARGV[3] max, ARGV[4] m = #KEYS - 1,
-- ARGV[5 .. 4+m] each campaign key's interval µs, then one per send: the index of its
--   campaign key (2..), or 0 for a campaign without a cap
-- Returns { now µs, next µs (when asking again can grant something; 0: nothing waits), then
-- per send its time µs or 0 }.
local interval, horizon, max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local m = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local horizon_end = now + horizon
local function tat(key)
  local v = tonumber(redis.call('GET', key) or '0') or 0
  if v < now then return now end
  return v
end
local number = tat(KEYS[1])
local campaigns, own = {}, {}
for i = 1, m do
  own[i + 1] = tonumber(ARGV[4 + i])
  campaigns[i + 1] = tat(KEYS[i + 1])
end
local first = 5 + m
local at, granted, waiting, visited = {}, 0, {}, 0
local function grant(i, k)
  at[i] = number
  if k > 0 then campaigns[k] = number + own[k] end
  number = number + interval
  granted = granted + 1
end
for i = first, #ARGV do
  if granted >= max or number > horizon_end then break end
  visited = visited + 1
  -- A waiting send whose campaign's slot has come goes first.
  for w = 1, #waiting do
    local j = waiting[w]
    local k = tonumber(ARGV[j])
    if campaigns[k] <= number then
      table.remove(waiting, w)
      grant(j, k)
      break
    end
  end
  if granted < max and number <= horizon_end then
    local k = tonumber(ARGV[i])
    if k > 0 and campaigns[k] > number then
      waiting[#waiting + 1] = i
    else
      grant(i, k)
    end
  else
    visited = visited - 1
    break
  end
end
-- When asking again can grant something: a send held by the number's rate once its next slot
-- is within the horizon; one held by its campaign's once that slot has come.
local next = nil
local function earliest(v)
  if not next or v < next then next = v end
end
if granted < #ARGV - first + 1 then
  if visited < #ARGV - first + 1 then earliest(number - horizon) end
  for _, j in ipairs(waiting) do
    earliest(math.max(campaigns[tonumber(ARGV[j])], number - horizon))
  end
end
-- Each key expires once its time is in the past: it only matters while ahead of now.
local function store(key, v)
  redis.call('SET', key, string.format('%.0f', v), 'PX', math.floor((v - now) / 1000) + 1000)
end
if granted > 0 then store(KEYS[1], number) end
for k = 2, m + 1 do
  if campaigns[k] > now then store(KEYS[k], campaigns[k]) end
end
local out = { now, next or 0 }
for i = first, #ARGV do out[#out + 1] = at[i] or 0 end
return out
