-- horizon(clock_key, seq_key, now, ttl_ms): a bound on the seqs published before now - ttl. A
-- clock point (t, s) says every event published before t has a seq of at most s (s is the
-- counter as the publish at t began), so the first point at or after that time bounds them;
-- with none since, the head does.
local function horizon(clock_key, seq_key, now, ttl_ms)
  local point = redis.call('ZRANGEBYSCORE', clock_key, now - ttl_ms, '+inf', 'LIMIT', 0, 1)
  if #point > 0 then return tonumber(point[1]) end
  return tonumber(redis.call('GET', seq_key) or '0')
end
