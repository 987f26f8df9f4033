-- Claims up to ARGV[2] pending jobs of a running campaign under one lease token.
-- KEYS[1] campaign meta
-- ARGV[1] key base, ARGV[2] max, ARGV[3] lease token, ARGV[4] lease ms
-- Returns { completed (0/1), jobs }, jobs one string of "<seq> <length> <record>" per job,
-- the record as it was (pending): two reply values to decode, however many jobs.
-- A record's first byte when it is pending ('p'), and its second when it is pending until
-- its send window opens ('pw').
local PENDING, WINDOW = string.byte('p'), string.byte('w')
local meta, base = KEYS[1], ARGV[1]
local max, token, lease = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
if redis.call('HGET', meta, 'status') ~= 'running' then return { 0 } end
local now = now_ms()
local q = base .. ':q'
-- Retries that are due go to the head of the queue.
local due = redis.call('ZRANGEBYSCORE', base .. ':delay', '-inf', now, 'LIMIT', 0, max)
if #due > 0 then
  redis.call('ZREM', base .. ':delay', unpack(due))
  for i = #due, 1, -1 do redis.call('LPUSH', q, due[i]) end
end
local res, held, out, waited = { 0, '' }, {}, {}, 0
local seqs = redis.call('LPOP', q, max)
if seqs then
  each_job(base, seqs, 1, 1, function(_, seq, rec)
    -- Anything but a pending record is a stale queue entry (settled meanwhile): skip it.
    -- A pending record is "p|att|phone||aux|flags|vars" (or "pw|…") with an empty token, so
    -- the claimed record is the same with the state ('s', held: see common.lua) and the
    -- token swapped in.
    if not rec or string.byte(rec, 1) ~= PENDING then return nil end
    local from = 2
    if string.byte(rec, 2) == WINDOW then from, waited = 3, waited + 1 end
    local at = string.match(rec, '^pw?|[^|]*|[^|]*|()')
    out[#out + 1] = seq .. ' ' .. #rec .. ' ' .. rec
    held[#held + 1] = seq
    return 's' .. string.sub(rec, from, at - 1) .. token .. string.sub(rec, at)
  end)
end
local n = #held
if n > 0 then
  redis.call('ZADD', base .. ':lease', now + lease, token)
  redis.call('RPUSH', base .. ':lease:' .. token, unpack(held))
  -- Not started yet: start.lua takes each mark away as its request is about to go out.
  redis.call('SADD', base .. ':fresh:' .. token, unpack(held))
  redis.call('HINCRBY', base .. ':lease_n', token, n)
  redis.call('HINCRBY', base .. ':stats', 'pending', -n)
  redis.call('HINCRBY', base .. ':stats', 'in_flight', n)
  if waited > 0 then redis.call('HINCRBY', base .. ':stats', 'window_wait', -waited) end
  res[2] = table.concat(out)
else
  res[1] = maybe_complete(meta, base, now)
end
return res
