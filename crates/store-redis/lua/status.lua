-- Applies webhook statuses, forward-only on the delivery lattice. The record's aux becomes
-- "<message id>[ <error code of a webhook failure>]".
-- KEYS[1] campaign meta
-- ARGV[1] key base, ARGV[2] backlog lag ms, ARGV[3] '1' if the statuses may have been applied
--   before (StatusUpdate::replayed), else '0', then 8-tuples: seq, lattice bits of the status,
--   message id ('' unknown), error code (''), billable ('1', '0' or ''), pricing category (''),
--   the event's Unix seconds ('' unknown), the charge ('c:<category>' charged, 'f:<type>'
--   free, '' none: herald_core::cost::Charge)
-- A status with a charge, once the message is delivered (by it or an earlier status), counts
-- the charge once per message (flag C):
-- chg:<region>:<category>:<day> (day: Unix days of the event, UTC) or free:<type>.
-- A status for a job not yet accepted (in flight, in doubt, pending a resend) is evidence
-- that Meta accepted it. A job that ended without a message id is left alone ("late").
-- Returns { completed (0/1), evidence ms, phone number id, backlog (0/1), then per status:
-- 1 changed, 0 no change, 2 late, 3 unknown job, 4 changed and the record learned its message
-- id from the status (its lookup is the caller's to write), 5 no change, and replayed: the
-- record holds the status's message id (an interrupted first application may have taught
-- it and not written its lookup; 4 when it changed) }. Settling the last in-doubt job
-- completes a running campaign. Evidence is the latest acceptance time among the jobs whose
-- status applied, or the event time of their status if later: the webhook pipeline of the
-- campaign's number has caught up to it. Backlog: a status arrived more than the backlog lag
-- after its event (retries after an outage).

-- Webhook failures that are Meta declining to deliver, by code (SkipReason::declined_by).
local DECLINED = { ['131049'] = 'frequency_capped', ['130472'] = 'experiment' }
local meta, base, lag, replayed = KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1'
local now = now_ms()
local out, c, evidence = { 0, 0, redis.call('HGET', meta, 'pnid') or '', 0 }, {}, 0
local LEVELS = { 'sent', 'delivered', 'read' }
for i = 4, #ARGV, 8 do
  local seq, bits, wamid = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local code, billable, category = ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local event_s, charge = tonumber(ARGV[i + 6]), ARGV[i + 7]
  if event_s and now - event_s * 1000 > lag then out[4] = 1 end
  local r = get_job(base, seq)
  if r == nil then
    out[#out + 1] = 3
  else
    local s = string.sub(r.st, 1, 1)
    local old, changed = nil, false
    if s == 'a' then
      old = tonumber(string.sub(r.st, 2)) or 0
    elseif s == 'p' or s == 'c' or s == 's' or s == 'd' then
      local at = now
      if s == 'd' then at = tonumber(r.aux) or now end
      leave(base, c, r, seq)
      bump(c, 'accepted', 1)
      r.aux, r.tok, old, changed = '', int(at), 0, true
    end
    if old == nil then
      out[#out + 1] = 2
    else
      -- How far this status shows the webhooks have come: the message's acceptance, or the
      -- event it reports (a delivery or read hours later), never beyond now.
      local at = tonumber(r.tok) or 0
      if event_s then at = math.max(at, math.min(event_s * 1000, now)) end
      if at > evidence then evidence = at end
      local op, of = old % 4, math.floor(old / 4) % 2
      local bp, bf = bits % 4, math.floor(bits / 4) % 2
      local np, nf = math.max(op, bp), math.max(of, bf)
      for level = 1, 3 do
        if op < level and np >= level then bump(c, LEVELS[level], 1) end
      end
      if nf == 1 and of == 0 then
        -- Meta declining to deliver (the user's marketing limit, an experiment) is not a
        -- failure: SkipReason::declined_by.
        if DECLINED[code] then
          bump(c, 'dcl:' .. DECLINED[code], 1)
        else
          bump(c, 'failed', 1)
          if code ~= '' then bump(c, 'err:' .. code, 1) end
        end
        if code ~= '' then r.aux = r.aux .. ' ' .. code end
      end
      local new = np + 4 * nf
      if new ~= old then changed = true end
      r.st = ACCEPTED[new]
      -- aux is "<message id>[ <webhook error code>]"; the id may arrive after the failure.
      -- Whether the caller writes the id's lookup.
      local lookup = false
      if wamid ~= '' and string.sub(r.aux, 1, 1) == ' ' or (wamid ~= '' and r.aux == '') then
        r.aux, changed, lookup = wamid .. r.aux, true, true
      elseif replayed and wamid ~= '' and string.sub(r.aux, 1, #wamid) == wamid
          and (#r.aux == #wamid or string.sub(r.aux, #wamid + 1, #wamid + 1) == ' ') then
        lookup = true
      end
      if billable ~= '' and not has_flag(r, 'P') then
        if billable == '1' then bump(c, 'billable', 1) end
        if category ~= '' then bump(c, 'cat:' .. category, 1) end
        r.fl, changed = r.fl .. 'P', true
      end
      -- Meta charges on delivery: a delivered or read status carries the charge.
      if charge ~= '' and np >= 2 and bf == 0 and not has_flag(r, 'C') then
        local kind, what = string.sub(charge, 1, 1), string.sub(charge, 3)
        if kind == 'c' then
          local day = math.floor((event_s and event_s * 1000 or now) / 86400000)
          bump(c, 'chg:' .. region_of(r.ph) .. ':' .. what .. ':' .. int(day), 1)
        else
          bump(c, 'free:' .. what, 1)
        end
        r.fl, changed = r.fl .. 'C', true
      end
      if changed then put_job(base, seq, r) end
      if changed then
        out[#out + 1] = lookup and 4 or 1
      else
        out[#out + 1] = lookup and 5 or 0
      end
    end
  end
end
flush(base, c)
out[1] = maybe_complete(meta, base, now)
out[2] = evidence
return out
