-- Adds recipients as pending jobs, idempotently on (campaign, phone).
-- KEYS[1] campaign meta
-- ARGV[1] key base, ARGV[2] dedupe bucket count, then triples: phone digits, region (two
--   capitals, ZZ unknown), encoded vars
-- Returns one 1 (new) or 0 (already in the campaign) per recipient. New recipients are
-- counted by region (rgn:<region>), which the cost estimate prices.
local meta, base, nb = KEYS[1], ARGV[1], tonumber(ARGV[2])
local st = redis.call('HGET', meta, 'status')
if not st then return redis.error_reply('HNOTFOUND no such campaign') end
if st == 'completed' or st == 'cancelled' then return redis.error_reply('HFINAL ' .. st) end
local seq = tonumber(redis.call('HGET', meta, 'next_seq') or '0')
local out, pushes, dkeys, regions = {}, {}, {}, {}
for i = 3, #ARGV, 3 do
  local phone, region, vars = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local b = tonumber(phone) % nb
  local dkey = dkeys[b]
  if not dkey then
    dkey = base .. ':d:' .. int(b)
    dkeys[b] = dkey
  end
  local s = int(seq + 1)
  if redis.call('HSETNX', dkey, phone, s) == 1 then
    seq = seq + 1
    local k, f = addr(base, s)
    redis.call('HSET', k, f, 'p|0|' .. phone .. ':' .. region .. '||||' .. vars)
    bump(regions, 'rgn:' .. region, 1)
    pushes[#pushes + 1] = s
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
if #pushes > 0 then
  redis.call('RPUSH', base .. ':q', unpack(pushes))
  redis.call('HSET', meta, 'next_seq', int(seq))
  redis.call('HINCRBY', base .. ':stats', 'recipients', #pushes)
  redis.call('HINCRBY', base .. ':stats', 'pending', #pushes)
  flush(base, regions)
end
return out
