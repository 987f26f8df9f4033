-- Shared helpers, prepended to every Herald script that touches one campaign.
--
-- Every key a script touches is built from ARGV[1], the campaign's key base
-- ("<prefix>:{c:<id>}"), which shares KEYS[1]'s hash tag: one script, one Cluster slot.
-- KEYS declares every fixed key of the campaign (the meta first; src/keys.rs DECLARED, which a
-- test checks against these scripts); those named by data the script reads (j:<n>, d:<b>,
-- lease:<token>) cannot be declared before it runs, and share the same tag.
--
-- Leases are per claim: <base>:lease is a ZSET token -> expiry ms, <base>:lease:<token> the
-- LIST of seqs claimed under it, <base>:lease_n a HASH token -> jobs still held, and
-- <base>:fresh:<token> the SET of its seqs not yet started (see start.lua). A token whose jobs
-- are all settled is dropped at once; an expired one is swept by reclaim.
--
-- A job record is one string in a bucket hash of 10 jobs: seq "12345" lives in
-- <base>:j:1234, field "5" (seqs below 10 in <base>:j:0). The split is textual, so no
-- number is ever formatted on the hot path (Redis formats Lua numbers with printf, which
-- profiling showed costs more than the hash operations). The record is
--     state|attempts|phone|token|aux|flags|vars
-- phone: the digits, then `:` and the number's region (two capitals; records written
--        before regions were kept have none).
-- state: p pending (queued or delayed), pw pending until its send window opens (counted in
--        window_wait), s held under a claim: started, unless its seq is still in
--        <base>:fresh:<token> (claim.lua writes 's' and the fresh mark, start.lua takes
--        the mark away), c claimed and not started (records of builds before the fresh
--        marks, which wrote 'c' and marked a start in the record), d in doubt,
--        a0..a7 accepted with delivery-lattice bits (progress in bits 0-1: accepted, sent,
--        delivered, read; failed in bit 2), f failed, k skipped, x cancelled.
-- token: the lease token while claimed or started (c, s); once accepted (a), when Meta took
--        it (ms): the answer's arrival, or for a job settled by webhook while in doubt, the
--        start of the doubt (evidence of how far the webhook pipeline has caught up).
-- aux:   the message id, then a space and the error code of a webhook failure (a); the error
--        code (f); the skip reason (k); in doubt since ms (d).
-- flags: r = the in-doubt resend was used, P = pricing counted, R = reply counted,
--        C = the charge (or a free delivery) counted.
-- vars:  the encoded variables; kept after the job ends (a follow-up campaign fills its
--        message from them).
--
-- Counters live in <base>:stats and move in the same script as the state they describe.
--
-- Refusals, as error replies `<CODE> <detail>` (mapped once, src/lib.rs `map_err`):
--   HNOTFOUND  no such campaign                   -> StoreError::NotFound
--   HFINAL     the campaign has ended (detail: its status) -> StoreError::Final
--   HSTATE     the campaign cannot make this move -> StoreError::Invalid
-- (without a campaign to name, HNOTFOUND and HFINAL are StoreError::Invalid too).

local PATTERN = '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$'
local ACCEPTED = { [0] = 'a0', 'a1', 'a2', 'a3', 'a4', 'a5', 'a6', 'a7' }

local function int(n)
  return string.format('%d', n)
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Bucket key names, built once per bucket per call.
local JOB_KEYS = {}
local function addr(base, seq)
  local n = #seq
  local b = n == 1 and '0' or string.sub(seq, 1, n - 1)
  local k = JOB_KEYS[b]
  if not k then
    k = base .. ':j:' .. b
    JOB_KEYS[b] = k
  end
  return k, string.sub(seq, n)
end

-- Visits the jobs named by list[from], list[from + step], … a bucket at a time: the jobs of
-- one call are mostly consecutive seqs, ten to a bucket, so one HMGET and one HSET stand for
-- up to ten HGETs and HSETs (each redis.call costs more than the hash work it does).
-- visit(i, seq, rec) gets the record (false if there is none) and answers the new one, or
-- nil to leave it; it may call Redis, but not read or write job records. A seq named twice
-- starts a new bucket run, so its second visit sees what the first wrote.
local function each_job(base, list, from, step, visit)
  local n, i = #list, from
  while i <= n do
    local k = addr(base, list[i])
    local at, fields, seen = {}, {}, {}
    while i <= n do
      local kj, f = addr(base, list[i])
      if kj ~= k or seen[f] then break end
      seen[f] = true
      at[#at + 1], fields[#fields + 1] = i, f
      i = i + step
    end
    local recs = redis.call('HMGET', k, unpack(fields))
    local writes = {}
    for r = 1, #at do
      local new = visit(at[r], list[at[r]], recs[r])
      if new then
        writes[#writes + 1] = fields[r]
        writes[#writes + 1] = new
      end
    end
    if #writes > 0 then redis.call('HSET', k, unpack(writes)) end
  end
end

local function parse(rec)
  local st, att, ph, tok, aux, fl, vars = string.match(rec, PATTERN)
  if not st then return nil end
  return { st = st, att = att, ph = ph, tok = tok, aux = aux, fl = fl, vars = vars }
end

-- The one place a record is written out (fields as strings; see the layout above).
local function record(st, att, ph, tok, aux, fl, vars)
  return st .. '|' .. att .. '|' .. ph .. '|' .. tok .. '|' .. aux .. '|' .. fl .. '|' .. vars
end

local function fmt(r)
  return record(r.st, r.att, r.ph, r.tok, r.aux, r.fl, r.vars)
end

local function get_job(base, seq)
  local k, f = addr(base, seq)
  local rec = redis.call('HGET', k, f)
  if not rec then return nil end
  return parse(rec)
end

local function put_job(base, seq, r)
  local k, f = addr(base, seq)
  redis.call('HSET', k, f, fmt(r))
end

-- The attempt counts a job usually has, one up, without formatting a number.
local NEXT = { ['0'] = '1', ['1'] = '2', ['2'] = '3', ['3'] = '4', ['4'] = '5', ['5'] = '6',
  ['6'] = '7', ['7'] = '8', ['8'] = '9', ['9'] = '10' }
local function inc(att)
  return NEXT[att] or int((tonumber(att) or 0) + 1)
end

-- Counter changes accumulate here and are written once per call.
local function bump(c, field, n)
  c[field] = (c[field] or 0) + n
end

local function flush(base, c)
  for f, n in pairs(c) do
    if n ~= 0 then redis.call('HINCRBY', base .. ':stats', f, n) end
  end
end

-- The region part of a record's phone field ('ZZ' when it has none).
local function region_of(ph)
  return string.match(ph, ':(%u%u)$') or 'ZZ'
end

local function has_flag(r, f)
  return string.find(r.fl, f, 1, true) ~= nil
end

-- The most values one command is given from a Lua table (unpack is bounded by Lua's stack).
local ARG_CHUNK = 500

-- Deletes what a lease token leaves behind: its claim list and fresh marks.
local function drop_lease(base, tok)
  redis.call('ZREM', base .. ':lease', tok)
  redis.call('DEL', base .. ':lease:' .. tok, base .. ':fresh:' .. tok)
  redis.call('HDEL', base .. ':lease_n', tok)
end

-- One fewer job held under a lease token; the lease goes when none is left.
local function release_lease(base, tok, n)
  if tok == '' or n == 0 then return end
  local left = redis.call('HINCRBY', base .. ':lease_n', tok, -n)
  if left <= 0 then drop_lease(base, tok) end
end

-- Whether a campaign was cancelled (read once per script call).
local function is_cancelled(meta)
  return redis.call('HGET', meta, 'status') == 'cancelled'
end

-- A job that was not sent goes back to wait: to the head of the queue (delay_ms nil) or the
-- delay set. Unless its campaign was cancelled: then it is cancelled, so that nothing of a
-- cancelled campaign is ever pending again. The caller writes the record.
local function back_to_wait(cancelled, base, c, r, seq, now, delay_ms)
  if cancelled then
    r.st, r.tok = 'x', ''
    bump(c, 'cancelled', 1)
    return
  end
  r.st, r.tok = 'p', ''
  if delay_ms then
    redis.call('ZADD', base .. ':delay', now + delay_ms, seq)
  else
    redis.call('LPUSH', base .. ':q', seq)
  end
  bump(c, 'pending', 1)
end

-- Leaves a not-yet-accepted state (evidence of acceptance arrived): its counter goes down
-- and the job leaves the index it sat in. A queue entry left behind is skipped by claim.
local function leave(base, c, r, seq)
  local s = string.sub(r.st, 1, 1)
  if s == 'p' then
    bump(c, 'pending', -1)
    if r.st == 'pw' then bump(c, 'window_wait', -1) end
    redis.call('ZREM', base .. ':delay', seq)
  elseif s == 'c' or s == 's' then
    bump(c, 'in_flight', -1)
    -- No longer held: a start under its old token must not send it.
    redis.call('SREM', base .. ':fresh:' .. r.tok, seq)
    release_lease(base, r.tok, 1)
  elseif s == 'd' then
    bump(c, 'in_doubt', -1)
    redis.call('ZREM', base .. ':doubt', seq)
  end
end

-- A running campaign with recipients and nothing left to do (and no upload holding it open)
-- completes. Returns 1 when it did.
local function maybe_complete(meta, base, now)
  if redis.call('HGET', meta, 'status') ~= 'running' then return 0 end
  local v = redis.call('HMGET', base .. ':stats', 'recipients', 'pending', 'in_flight', 'in_doubt')
  if (tonumber(v[1]) or 0) == 0 then return 0 end
  for i = 2, 4 do
    if (tonumber(v[i]) or 0) > 0 then return 0 end
  end
  if #redis.call('ZRANGEBYSCORE', base .. ':uploads', '(' .. now, '+inf', 'LIMIT', 0, 1) > 0 then
    return 0
  end
  redis.call('HSET', meta, 'status', 'completed', 'finished_ms', now, 'updated_ms', now)
  return 1
end
