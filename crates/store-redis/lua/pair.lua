-- Pair spacing: at most one send per ARGV[1] ms to each recipient from one phone number.
-- Each key also remembers the campaign that sent, for 72 h, to attribute replies.
-- KEYS[1..n] pair keys (hash tag of the phone number id)
-- ARGV[1] interval ms, ARGV[2] memory ms, ARGV[3..n+2] campaign ids
-- Returns one string, comma-separated per key: 0 (reserved) or the store time (ms) before
-- which it must not be sent.
local interval, memory = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i, key in ipairs(KEYS) do
  local v = redis.call('GET', key)
  local nb = v and string.match(v, '^(%d+)')
  if nb and tonumber(nb) > now then
    out[i] = nb
  else
    redis.call('SET', key, string.format('%.0f', now + interval) .. ':' .. ARGV[i + 2], 'PX', memory)
    out[i] = '0'
  end
end
return table.concat(out, ',')
