-- Marks held jobs as started, just before their requests go out. A job of a campaign that
-- is no longer running is released to the head of the queue instead (cancelled, if the
-- campaign was).
-- KEYS[1] campaign meta
-- ARGV[1] key base, then pairs: seq, lease token
-- Returns one string with a '1' (send it) or '0' (do not) per job: one reply value to decode,
-- however many jobs.
-- A held record is "c|att|phone|token|…" (see common.lua): started, the same with an 's'. It
-- is edited as text, as claim.lua does, without taking it apart.
local CLAIMED, BAR = string.byte('c'), string.byte('|')
local meta, base = KEYS[1], ARGV[1]
local status = redis.call('HGET', meta, 'status')
local running, cancelled = status == 'running', status == 'cancelled'
local out, c = {}, {}
each_job(base, ARGV, 2, 2, function(i, seq, rec)
  local tok = ARGV[i + 1]
  -- Where the token field starts, if the job is claimed; held if that field is `tok`.
  local at = rec and string.byte(rec, 1) == CLAIMED and string.match(rec, '^c|[^|]*|[^|]*|()')
  if not (at and string.find(rec, tok, at, true) == at and string.byte(rec, at + #tok) == BAR) then
    out[#out + 1] = '0'
    return nil
  end
  if running then
    out[#out + 1] = '1'
    return 's' .. string.sub(rec, 2)
  end
  local r = parse(rec)
  release_lease(base, r.tok, 1)
  bump(c, 'in_flight', -1)
  back_to_wait(cancelled, base, c, r, seq, 0, nil)
  out[#out + 1] = '0'
  return fmt(r)
end)
flush(base, c)
return table.concat(out)
