-- Add/refresh and remove presence entries in one command.
-- KEYS: the presence set of each entry, adds first; ARGV: expires_ms, the sets' TTL (ms), the
-- number of adds, then each entry's member in KEYS' order. One command for a whole chunk: a
-- pipeline of ZADD + PEXPIRE per entry cost the worker ~20 µs per entry to build.
local adds = tonumber(ARGV[3])
for i = 1, #KEYS do
  if i <= adds then
    redis.call('ZADD', KEYS[i], ARGV[1], ARGV[3 + i])
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
  else
    redis.call('ZREM', KEYS[i], ARGV[3 + i])
  end
end
return #KEYS
