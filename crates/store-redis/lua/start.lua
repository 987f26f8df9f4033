-- Marks held jobs as started, just before their requests go out. A claim writes its jobs'
-- records as held ('s') and their seqs into <base>:fresh:<token>; starting a job takes its
-- seq out of that set, so a round's start is a few commands (ZSCORE of the lease, SMISMEMBER
-- and SREM of the marks) rather than a record read and write per job. A job may start while
-- its lease stands (reclaim sweeps an expired one) and its seq is fresh: not started yet,
-- not settled unsent (settle.lua), not settled by evidence (common.lua `leave`). A job
-- settled as sent was started first (its request needed that). A job of a campaign that is
-- no longer running is released to the head of the queue instead (cancelled, if the campaign
-- was).
-- Older builds wrote 'c' at claim and 's' at start: a sweep by one of those takes a held job
-- for started, so a job this build claimed and a dead worker never started goes in doubt
-- rather than back to pending (resent once, on evidence), and none is ever sent twice.
-- KEYS[1] campaign meta
-- ARGV[1] key base, then per lease token: the token, how many seqs follow, the seqs (each
-- claimed under that token)
-- Returns one string with a '1' (send it) or '0' (do not) per seq, in order: one reply value
-- to decode, however many jobs.
local meta, base = KEYS[1], ARGV[1]
local status = redis.call('HGET', meta, 'status')
local running, cancelled = status == 'running', status == 'cancelled'
local out, c = {}, {}

-- Not running: a fresh job still held under `tok` goes back to wait (rare; one by one).
local function release(seq, tok)
  local r = get_job(base, seq)
  if not (r and r.st == 's' and r.tok == tok) then return end
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
  local fresh_key = base .. ':fresh:' .. tok
  if not redis.call('ZSCORE', base .. ':lease', tok) then
    for _ = from, to do out[#out + 1] = '0' end
  else
    local taken = {}
    for a = from, to, ARG_CHUNK do
      local b = math.min(a + ARG_CHUNK - 1, to)
      local fresh = redis.call('SMISMEMBER', fresh_key, unpack(ARGV, a, b))
      for k = a, b do
        local seq = ARGV[k]
        if fresh[k - a + 1] == 1 and not taken[seq] then
          taken[#taken + 1], taken[seq] = seq, true
          out[#out + 1] = running and '1' or '0'
        else
          out[#out + 1] = '0'
        end
      end
    end
    for a = 1, #taken, ARG_CHUNK do
      redis.call('SREM', fresh_key, unpack(taken, a, math.min(a + ARG_CHUNK - 1, #taken)))
    end
    if not running then
      for k = 1, #taken do release(taken[k], tok) end
    end
  end
end
flush(base, c)
return table.concat(out)
