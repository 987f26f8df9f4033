-- Extends the leases of claim tokens still held (ZADD XX never revives a swept one).
-- KEYS[1] campaign meta
-- ARGV[1] key base, ARGV[2] lease ms, then lease tokens
local base, lease = ARGV[1], tonumber(ARGV[2])
local now = now_ms()
local args = {}
for i = 3, #ARGV do
  args[#args + 1] = now + lease
  args[#args + 1] = ARGV[i]
end
if #args > 0 then redis.call('ZADD', base .. ':lease', 'XX', unpack(args)) end
return #args / 2
