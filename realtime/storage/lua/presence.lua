-- Drop expired members, return the rest.
-- KEYS: presence set.  ARGV: now ms.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1)
