-- Expired leases: a claimed job goes back to the head of the queue (cancelled, if its campaign
-- was); a started one (its request may have reached Meta) is in doubt. Jobs settled meanwhile
-- are left alone.
-- KEYS[1] campaign meta
-- ARGV[1] key base, ARGV[2] max lease tokens per call
-- Returns { to pending (or cancelled), to in doubt, more left (0/1) }.
local meta, base, max = KEYS[1], ARGV[1], tonumber(ARGV[2])
local now = now_ms()
local cancelled = is_cancelled(meta)
local tokens = redis.call('ZRANGEBYSCORE', base .. ':lease', '-inf', now, 'LIMIT', 0, max)
local c, pend, doubt = {}, 0, 0
for _, tok in ipairs(tokens) do
  local seqs = redis.call('LRANGE', base .. ':lease:' .. tok, 0, -1)
  -- Which were never started (start.lua takes a job's fresh mark away).
  local fresh = {}
  for a = 1, #seqs, ARG_CHUNK do
    local got = redis.call('SMISMEMBER', base .. ':fresh:' .. tok,
      unpack(seqs, a, math.min(a + ARG_CHUNK - 1, #seqs)))
    for k = 1, #got do fresh[a + k - 1] = got[k] == 1 end
  end
  for k, seq in ipairs(seqs) do
    local r = get_job(base, seq)
    local held = r and r.tok == tok and (r.st == 'c' or r.st == 's')
    -- 'c': claimed by an older build and not started (it marked starts in the record).
    if held and (r.st == 'c' or fresh[k]) then
      bump(c, 'in_flight', -1)
      back_to_wait(cancelled, base, c, r, seq, now, nil)
      pend = pend + 1
      put_job(base, seq, r)
    elseif held then
      r.st, r.tok, r.aux = 'd', '', int(now)
      redis.call('ZADD', base .. ':doubt', now, seq)
      bump(c, 'in_flight', -1)
      bump(c, 'in_doubt', 1)
      doubt = doubt + 1
      put_job(base, seq, r)
    end
  end
  drop_lease(base, tok)
end
flush(base, c)
return { pend, doubt, #tokens == max and 1 or 0 }
