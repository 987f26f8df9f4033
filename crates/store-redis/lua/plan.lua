-- Plans send times from a phone number's rolling window and the capped campaigns' own
-- limiters (GCRA each: a theoretical arrival time, µs).
--
-- The number's window is a log of sends (a ZSET), the last window's and those planned ahead,
-- each at the latest time it may go (µs): at most `capacity` in any `window`. A new send
-- goes after every logged one: while fewer than `capacity` are within a window of it,
-- evenly, `window / capacity` after the last one's time; once the window is full, when the
-- send `capacity` before it has left the window by its latest time, and no closer than
-- `min_spacing` to the last (so a schedule a late send shifted catches up, instead of losing
-- the shift for good). It may go from its time until its latest, `slack` after it, or
-- `room_slack` while the window is less than half full (a late wake-up then costs nothing;
-- the sends a window later are placed after the latest time, so whenever in that span it
-- goes, no window holds more than `capacity`). The sends one plan logs have latest times
-- that never decrease. The last send's own time is kept beside the log (KEYS[2]).
-- lua/move.lua moves a send that woke after its latest time to when it really went; once a
-- request has gone, the sender logs it at its departure (`record_departures`, a `ZADD XX`),
-- later or earlier than its latest time, so the log is read by score, never by plan order.
--
-- In order, each send takes the number's next time, provided its campaign's limiter has a
-- slot by then; a send whose campaign has none yet is passed over (and takes a later time of
-- this plan once its campaign's has come), and the sends after it go on. No time before
-- now + lead (when the caller's sends can go) nor beyond now + horizon, at most `max`
-- granted. All workers share these keys, so together they never exceed either limit. (The
-- memory backend keeps the same rule in src/memory/pace.rs.)
--
-- KEYS[1] the number's log, KEYS[2] the last send's time, KEYS[3..] capped campaigns'
--   limiters (all with the phone number id's hash tag)
-- ARGV[1] capacity, ARGV[2] window µs, ARGV[3] min spacing µs, ARGV[4] slack µs,
-- ARGV[5] room slack µs, ARGV[6] lead µs, ARGV[7] horizon µs, ARGV[8] max, ARGV[9] token
-- (members are "<token>.<index>"), ARGV[10] m = #KEYS - 2, ARGV[11 .. 10+m] each campaign
-- key's interval µs, then one per send: the index of its campaign key (3..), or 0 for a
-- campaign without a cap
-- Returns { now µs, next µs (when asking again can grant something; 0: nothing waits), then
-- per send its time and its latest time µs, or 0 and 0 }.
local capacity, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local min_spacing, slack, room_slack = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local lead, horizon, max = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local token, m = ARGV[9], tonumber(ARGV[10])
local spacing = math.floor(window / capacity)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local horizon_end = now + horizon
local soonest = now + lead
local log, last_key = KEYS[1], KEYS[2]

-- Sends that left the window constrain nothing.
redis.call('ZREMRANGEBYSCORE', log, '-inf', now - window)
local n = redis.call('ZCARD', log)
-- The last send's time, and the latest time of any.
local last, top = nil, nil
if n > 0 then
  top = tonumber(redis.call('ZRANGE', log, -1, -1, 'WITHSCORES')[2])
  last = tonumber(redis.call('GET', last_key) or top)
end
-- The send `capacity` before the j-th new one is, counting the logged sends in time order
-- then the new ones, at 0-based rank n + j - 1 - capacity: fetch the logged ones needed.
local first_rank = n - capacity
local logged = {}
if first_rank + max - 1 >= 0 and first_rank < n then
  local from = math.max(first_rank, 0)
  local got = redis.call('ZRANGE', log, from, math.min(first_rank + max - 1, n - 1), 'WITHSCORES')
  for i = 2, #got, 2 do logged[from + i / 2 - 1] = tonumber(got[i]) end
end
-- The latest times of the sends granted here, in order.
local granted_times = {}
-- When the next granted send would go.
local function next_time()
  local rank = first_rank + #granted_times
  local before = nil
  if rank >= 0 then
    if rank < n then before = logged[rank] else before = granted_times[rank - n + 1] end
  end
  local at = soonest
  if before then
    at = math.max(at, before + window)
    if last then at = math.max(at, last + min_spacing) end
  elseif last then
    at = math.max(at, last + spacing)
  end
  return at
end

local function tat(key)
  local v = tonumber(redis.call('GET', key) or '0') or 0
  if v < now then return now end
  return v
end
local campaigns, own = {}, {}
for i = 1, m do
  own[i + 2] = tonumber(ARGV[10 + i])
  campaigns[i + 2] = tat(KEYS[i + 2])
end
local first = 11 + m
local at, latest, granted, waiting, visited = {}, {}, 0, {}, 0
local number = next_time()
-- The granted sends' scores and members, logged after (next_time reads granted_times).
local logging = {}
local function grant(i, k)
  at[i] = number
  if k > 0 then campaigns[k] = number + own[k] end
  local allowed = slack
  if (n + #granted_times) * 2 < capacity then allowed = math.max(slack, room_slack) end
  top = math.max(number + allowed, top or 0)
  latest[i] = top
  granted_times[#granted_times + 1] = top
  logging[#logging + 1] = top
  logging[#logging + 1] = token .. '.' .. (i - first)
  last = number
  number = next_time()
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
-- When asking again can grant something: a send held by the number's window once its next
-- time is within the horizon; one held by its campaign's once that slot has come.
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
-- One ZADD per few hundred sends (each redis.call costs more than the insert it does; unpack
-- is bounded by Lua's stack).
for from = 1, #logging, 512 do
  redis.call('ZADD', log, unpack(logging, from, math.min(from + 511, #logging)))
end
-- The log expires a window after its last send; each campaign key once its time is past.
if granted > 0 then
  local ttl = math.floor((top - now + window) / 1000) + 1000
  redis.call('PEXPIRE', log, ttl)
  redis.call('SET', last_key, string.format('%.0f', last), 'PX', ttl)
end
for k = 3, m + 2 do
  if campaigns[k] > now then
    redis.call('SET', KEYS[k], string.format('%.0f', campaigns[k]), 'PX',
      math.floor((campaigns[k] - now) / 1000) + 1000)
  end
end
local out = { now, next or 0 }
for i = first, #ARGV do
  out[#out + 1] = at[i] or 0
  out[#out + 1] = latest[i] or 0
end
return out
