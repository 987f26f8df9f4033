-- Settles held jobs.
-- KEYS[1] campaign meta
-- ARGV[1] key base, then 4-tuples: seq, lease token, kind, argument:
--   A accepted (message id)   F failed (error code)      D delayed after a send (ms)
--   W deferred, not sent (ms) K skipped (reason)         U in doubt        R released
--   H not sent: outside its send window, which opens in (ms)
-- A job no longer held under the token is stale and unchanged, except that acceptance is
-- evidence: it settles a job that was reclaimed or is in doubt, and gives its message id to
-- a job its own webhook accepted first.
-- Returns one string: '1' if the campaign completed, then per job '1' (applied), '2' (known:
-- accepted with this message id already, by its own webhook) or '0' (stale).
local meta, base = KEYS[1], ARGV[1]
local now = now_ms()
local now_s = int(now)
local cancelled = is_cancelled(meta)
-- Jobs settled per token, and those of them settled unsent (see below).
local out, c, settled, unsent = {}, {}, {}, {}
-- The outcomes of a request: a job settled so was started before (the request needed it).
local SENT = { A = true, F = true, D = true, U = true }
each_job(base, ARGV, 2, 4, function(i, seq, rec)
  local tok, kind, arg = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local st, att, ph, rtok, aux, fl, vars
  if rec then st, att, ph, rtok, aux, fl, vars = string.match(rec, PATTERN) end
  if st and (st == 'c' or st == 's') and rtok == tok then
    settled[tok] = (settled[tok] or 0) + 1
    if not SENT[kind] then
      local seqs = unsent[tok]
      if not seqs then
        seqs = {}
        unsent[tok] = seqs
      end
      seqs[#seqs + 1] = seq
    end
    bump(c, 'in_flight', -1)
    out[#out + 1] = '1'
    if kind == 'A' then
      bump(c, 'accepted', 1)
      return record('a0', inc(att), ph, now_s, arg, fl, vars)
    elseif kind == 'F' then
      bump(c, 'failed', 1)
      bump(c, 'failed_before_accept', 1)
      bump(c, 'err:' .. arg, 1)
      return record('f', inc(att), ph, '', arg, fl, vars)
    elseif kind == 'K' then
      bump(c, 'skipped_at_send', 1)
      bump(c, 'skip:' .. arg, 1)
      return record('k', att, ph, '', arg, fl, vars)
    elseif kind == 'U' then
      redis.call('ZADD', base .. ':doubt', now, seq)
      bump(c, 'in_doubt', 1)
      return record('d', inc(att), ph, '', now_s, fl, vars)
    end
    -- D, W, H, R: not sent (or refused): waits again, or is cancelled with its campaign.
    if kind == 'D' then att = inc(att) end
    local r = { st = st, att = att, ph = ph, tok = rtok, aux = aux, fl = fl, vars = vars }
    back_to_wait(cancelled, base, c, r, seq, now, kind ~= 'R' and tonumber(arg) or nil)
    if kind == 'H' and r.st == 'p' then
      r.st = 'pw'
      bump(c, 'window_wait', 1)
    end
    return fmt(r)
  elseif st and kind == 'A' and string.find('pcsd', string.sub(st, 1, 1), 1, true) then
    leave(base, c, parse(rec), seq)
    bump(c, 'accepted', 1)
    out[#out + 1] = '1'
    return record('a0', inc(att), ph, now_s, arg, fl, vars)
  elseif st and kind == 'A' and string.sub(st, 1, 1) == 'a'
      and (aux == '' or string.sub(aux, 1, 1) == ' ') then
    -- Its own webhook settled it first (by its callback data, with no message id yet): the
    -- answer completes it, and nothing is counted twice.
    out[#out + 1] = '1'
    return record(st, inc(att), ph, rtok, arg .. aux, fl, vars)
  elseif st and kind == 'A' and string.sub(st, 1, 1) == 'a'
      and string.sub(aux, 1, #arg) == arg
      and (#aux == #arg or string.sub(aux, #arg + 1, #arg + 1) == ' ') then
    out[#out + 1] = '2'
  else
    out[#out + 1] = '0'
  end
  return nil
end)
-- Jobs settled unsent are no longer held: their fresh marks go, so that a start under their
-- token does not send them (start.lua). Those settled as sent were started, which took the
-- mark away already.
for t, seqs in pairs(unsent) do
  local key = base .. ':fresh:' .. t
  for a = 1, #seqs, ARG_CHUNK do
    redis.call('SREM', key, unpack(seqs, a, math.min(a + ARG_CHUNK - 1, #seqs)))
  end
end
for t, n in pairs(settled) do release_lease(base, t, n) end
flush(base, c)
local completed = maybe_complete(meta, base, now) == 1 and '1' or '0'
return completed .. table.concat(out)
