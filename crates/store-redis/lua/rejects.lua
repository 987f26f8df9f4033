-- Stores upload rejects, once each: a reject whose fingerprint the campaign already has (the
-- same row of the same file, sent again) changes nothing. The first ARGV[2] are stored for
-- the failures report and the first ARGV[3] remembered; every new one is counted.
-- KEYS[1] campaign meta
-- ARGV[1] key base, ARGV[2] rows kept, ARGV[3] fingerprints kept, then triples: fingerprint,
--   counter (upl:<reason>), row JSON
-- Returns the number of new rejects, or HNOTFOUND.
local meta, base = KEYS[1], ARGV[1]
local keep, remember = tonumber(ARGV[2]), tonumber(ARGV[3])
if redis.call('EXISTS', meta) == 0 then return redis.error_reply('HNOTFOUND no such campaign') end
local fps, list = base .. ':reject_fps', base .. ':rejects'
local stored, known = redis.call('LLEN', list), redis.call('SCARD', fps)
local c, new = {}, 0
for i = 4, #ARGV, 3 do
  local fp, counter, json = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.call('SISMEMBER', fps, fp) == 0 then
    if stored < keep then
      redis.call('RPUSH', list, json)
      stored = stored + 1
    end
    if known < remember then
      redis.call('SADD', fps, fp)
      known = known + 1
    end
    bump(c, counter, 1)
    new = new + 1
  end
end
flush(base, c)
return new
