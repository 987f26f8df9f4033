-- Pair spacing: at most one send per ARGV[1] ms to each recipient from one phone number.
-- Each key also remembers the campaign that sent, for 72 h, to attribute replies.
-- Most reservations are native `SET … NX PX … GET`s (src/pacing.rs `reserve_pairs`); this
-- script takes those whose key holds a reservation that has run out, and every one while
-- the process does not yet know the store's time.
-- KEYS[1..n] pair keys (hash tag of the phone number id)
-- ARGV[1] interval ms, ARGV[2] memory ms, ARGV[3..n+2] campaign ids
-- Returns one string, comma-separated per key: 0 (reserved) or the store time (ms) before
-- which it must not be sent.
-- Each key is written as it is read (SET … GET: one command per send, where almost every
-- send is to a recipient with no recent one); a reservation still standing is put back as
-- it was, its memory renewed.
-- The memory is passed on as given: a Lua number would be formatted for each key.
local interval, memory = tonumber(ARGV[1]), ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local reserved = string.format('%.0f', now + interval) .. ':'
local out = {}
for i, key in ipairs(KEYS) do
  local v = redis.call('SET', key, reserved .. ARGV[i + 2], 'PX', memory, 'GET')
  local nb = v and string.match(v, '^(%d+)')
  if nb and tonumber(nb) > now then
    redis.call('SET', key, v, 'PX', memory)
    out[i] = nb
  else
    out[i] = '0'
  end
end
return table.concat(out, ',')
