-- Marks held jobs as started, just before their requests go out. A job of a campaign that
-- is no longer running is released to the head of the queue instead (cancelled, if the
-- campaign was).
-- KEYS[1] campaign meta
-- ARGV[1] key base, then pairs: seq, lease token
-- Returns one string with a '1' (send it) or '0' (do not) per job: one reply value to decode,
-- however many jobs.
local meta, base = KEYS[1], ARGV[1]
local status = redis.call('HGET', meta, 'status')
local running, cancelled = status == 'running', status == 'cancelled'
local out, c = {}, {}
for i = 2, #ARGV, 2 do
  local seq, tok = ARGV[i], ARGV[i + 1]
  local r = get_job(base, seq)
  if r and r.st == 'c' and r.tok == tok then
    if running then
      r.st = 's'
      out[#out + 1] = '1'
    else
      release_lease(base, r.tok, 1)
      bump(c, 'in_flight', -1)
      back_to_wait(cancelled, base, c, r, seq, 0, nil)
      out[#out + 1] = '0'
    end
    put_job(base, seq, r)
  else
    out[#out + 1] = '0'
  end
end
flush(base, c)
return table.concat(out)
