-- Compare-and-set of a campaign's status (the legal transitions are decided by the caller,
-- from herald-core's lifecycle, so there is one table of them).
-- KEYS[1] campaign meta
-- ARGV[1] expected status, ARGV[2] new status, ARGV[3] pause reason JSON ('' none)
-- Returns { 'ok' } or { 'changed', current status } or an HNOTFOUND error.
local meta = KEYS[1]
local from, to, reason = ARGV[1], ARGV[2], ARGV[3]
local st = redis.call('HGET', meta, 'status')
if not st then return redis.error_reply('HNOTFOUND no such campaign') end
if st ~= from then return { 'changed', st } end
local now = now_ms()
redis.call('HSET', meta, 'status', to, 'updated_ms', now)
if to == 'paused' and reason ~= '' then
  redis.call('HSET', meta, 'reason', reason)
else
  redis.call('HDEL', meta, 'reason')
end
if to == 'running' and not redis.call('HGET', meta, 'started_ms') then
  redis.call('HSET', meta, 'started_ms', now)
end
if to == 'completed' or to == 'cancelled' then
  redis.call('HSET', meta, 'finished_ms', now)
end
return { 'ok' }
