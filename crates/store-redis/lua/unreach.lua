-- Uncounts a user whose send Meta refused, unless it was counted again since.
-- KEYS[1] the portfolio's reach set; ARGV[1] user, ARGV[2] the ms it was counted at.
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
