-- In-doubt jobs past the grace period whose own webhook never came although the webhook
-- pipeline has caught up past them (statuses of messages on the same phone number accepted
-- after they went in doubt were applied): resent once (same callback id) or failed with code
-- in_doubt. A second in-doubt of a resent job always fails; a job of a cancelled campaign is
-- cancelled. Without that evidence a job stays in doubt, however long (ARCHITECTURE §7).
-- KEYS[1] campaign meta
-- ARGV[1] key base, ARGV[2] grace ms, ARGV[3] policy (resend|fail), ARGV[4] max jobs,
-- ARGV[5] caught up ms (the latest acceptance time of a message of this number whose status
-- was applied), ARGV[6] backlog ms (when a status last arrived long after its event)
-- A job is resent only when it went in doubt a whole grace before the message the webhooks
-- caught up to, and no backlog drained within the last grace.
-- Returns { resent, failed, completed (0/1), more left (0/1), waiting for evidence }.
local meta, base = KEYS[1], ARGV[1]
local grace, policy, max = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local caught_up, backlog = tonumber(ARGV[5]) or 0, tonumber(ARGV[6]) or 0
local now = now_ms()
local status = redis.call('HGET', meta, 'status')
local upto = math.min(now - grace, caught_up - grace - 1)
if now - backlog < grace then upto = '-inf' end
local expired = redis.call('ZRANGEBYSCORE', base .. ':doubt', '-inf', upto, 'LIMIT', 0, max)
local c, resent, failed = {}, 0, 0
for _, s in ipairs(expired) do
  local seq = s
  local r = get_job(base, seq)
  if r and r.st == 'd' then
    bump(c, 'in_doubt', -1)
    if status == 'cancelled' then
      r.st = 'x'
      bump(c, 'cancelled', 1)
    elseif policy == 'resend' and not has_flag(r, 'r') then
      r.st, r.fl, r.aux = 'p', r.fl .. 'r', ''
      redis.call('LPUSH', base .. ':q', seq)
      bump(c, 'pending', 1)
      resent = resent + 1
    else
      r.st, r.aux = 'f', 'in_doubt'
      bump(c, 'failed', 1)
      bump(c, 'failed_before_accept', 1)
      bump(c, 'err:in_doubt', 1)
      failed = failed + 1
    end
    put_job(base, seq, r)
  end
  redis.call('ZREM', base .. ':doubt', seq)
end
flush(base, c)
local waiting = redis.call('ZCOUNT', base .. ':doubt', '-inf', now - grace)
return { resent, failed, maybe_complete(meta, base, now), #expired == max and 1 or 0, waiting }
