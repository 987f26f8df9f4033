-- Cancels unsent jobs of a cancelled campaign, a chunk per call (a big queue must not block
-- Redis): queued and delayed jobs become cancelled.
-- KEYS[1] campaign meta
-- ARGV[1] key base, ARGV[2] max jobs per call
-- Returns the number of queue and delay entries left.
local meta, base, max = KEYS[1], ARGV[1], tonumber(ARGV[2])
if redis.call('HGET', meta, 'status') ~= 'cancelled' then return redis.error_reply('HSTATE not cancelled') end
local c = {}
local function cancel(seq)
  local r = get_job(base, seq)
  if r and (r.st == 'p' or r.st == 'pw') then
    if r.st == 'pw' then bump(c, 'window_wait', -1) end
    r.st = 'x'
    put_job(base, seq, r)
    bump(c, 'pending', -1)
    bump(c, 'cancelled', 1)
  end
end
local seqs = redis.call('LPOP', base .. ':q', max)
if seqs then
  for _, s in ipairs(seqs) do cancel(s) end
end
local delayed = redis.call('ZRANGE', base .. ':delay', 0, max - 1)
for _, s in ipairs(delayed) do
  cancel(s)
  redis.call('ZREM', base .. ':delay', s)
end
flush(base, c)
return redis.call('LLEN', base .. ':q') + redis.call('ZCARD', base .. ':delay')
