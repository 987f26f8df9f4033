-- Marks held jobs as started, just before their requests go out. The mark is kept beside the
-- claim's lease, not in the job records: <base>:started:<token>, a SET of seqs, so that
-- starting a round of jobs costs a few commands rather than a record read and write each.
-- A job is held under its token while the lease stands (reclaim sweeps an expired one) and
-- its seq is not in <base>:gone:<token> (settled unsent, settle.lua, or settled by evidence,
-- common.lua `leave`). A job settled as sent was started first (its request needed that), so
-- a job already started or no longer held is not started again. A job of a campaign that is
-- no longer running is released to the head of the queue instead (cancelled, if the campaign
-- was).
-- KEYS[1] campaign meta
-- ARGV[1] key base, then per lease token: the token, how many seqs follow, the seqs (each
-- claimed under that token)
-- Returns one string with a '1' (send it) or '0' (do not) per seq, in order: one reply value
-- to decode, however many jobs.
local meta, base = KEYS[1], ARGV[1]
local status = redis.call('HGET', meta, 'status')
local running, cancelled = status == 'running', status == 'cancelled'
local out, c = {}, {}

-- Which of ARGV[from..to] are in the set `key` (none when it does not exist), by index.
local function members(key, from, to)
  local found = {}
  if redis.call('EXISTS', key) == 0 then return found end
  for a = from, to, ARG_CHUNK do
    local b = math.min(a + ARG_CHUNK - 1, to)
    local r = redis.call('SMISMEMBER', key, unpack(ARGV, a, b))
    for k = 1, #r do found[a + k - 1] = r[k] == 1 end
  end
  return found
end

-- Not running: each job still claimed under `tok` goes back to wait (rare; record by record).
local function release(seq, tok)
  local r = get_job(base, seq)
  if not (r and r.st == 'c' and r.tok == tok) then return end
  redis.call('SADD', base .. ':gone:' .. tok, seq)
  bump(c, 'in_flight', -1)
  back_to_wait(cancelled, base, c, r, seq, 0, nil)
  put_job(base, seq, r)
  release_lease(base, tok, 1)
end

local i = 2
while i <= #ARGV do
  local tok, n = ARGV[i], tonumber(ARGV[i + 1])
  local from, to = i + 2, i + 1 + n
  i = to + 1
  if not redis.call('ZSCORE', base .. ':lease', tok) then
    for _ = from, to do out[#out + 1] = '0' end
  else
    local started_key = base .. ':started:' .. tok
    local started = members(started_key, from, to)
    local gone = members(base .. ':gone:' .. tok, from, to)
    local marks, seen = {}, {}
    for k = from, to do
      local seq = ARGV[k]
      if started[k] or gone[k] or seen[seq] then
        out[#out + 1] = '0'
      elseif running then
        seen[seq] = true
        marks[#marks + 1] = seq
        out[#out + 1] = '1'
      else
        seen[seq] = true
        release(seq, tok)
        out[#out + 1] = '0'
      end
    end
    for a = 1, #marks, ARG_CHUNK do
      redis.call('SADD', started_key, unpack(marks, a, math.min(a + ARG_CHUNK - 1, #marks)))
    end
  end
end
flush(base, c)
return table.concat(out)
