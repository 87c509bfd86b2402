-- trim(key, marker_key, maxlen, ttl_ms, now, slack): shared by both scripts that may trim.
-- Remove what is over maxlen or older than the TTL from the front of a topic stream and remember
-- the highest seq removed, so replay can tell a gap exactly. The marker lives as long as its
-- stream (both are given the stream's expiry). With slack > 0 (a publish) the stream may hold up
-- to maxlen + slack entries before it is cut back to maxlen: cutting one entry at every publish
-- (a read of it, the trim, the marker and its expiry) cost as much as the publish itself. The
-- replay check trims with no slack first, so what a client is told is exactly as before.
local function trim(key, marker_key, maxlen, ttl_ms, now, slack)
  local removed = nil
  local len = redis.call('XLEN', key)
  if len > maxlen + slack then
    local over = redis.call('XRANGE', key, '-', '+', 'COUNT', len - maxlen)
    removed = over[#over][1]
    redis.call('XTRIM', key, 'MAXLEN', maxlen)
  end
  if ttl_ms > 0 then
    local cutoff = now - ttl_ms
    -- Most calls find the oldest entry fresh: read just that one (a page of 64 entries, data
    -- and all, cost a publish four times its own work in Redis).
    local oldest = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)
    local fresh = #oldest == 0 or tonumber(oldest[1][2][2]) >= cutoff
    while not fresh do
      local head = redis.call('XRANGE', key, '-', '+', 'COUNT', 64)
      local old = nil
      for _, entry in ipairs(head) do
        if tonumber(entry[2][2]) < cutoff then old = entry[1] else fresh = true break end
      end
      if old then
        local seq = tonumber(string.match(old, '^(%d+)'))
        redis.call('XTRIM', key, 'MINID', (seq + 1) .. '-0')
        removed = old
      end
      if #head < 64 then break end
    end
  end
  if removed then
    redis.call('SET', marker_key, string.match(removed, '^(%d+)'))
    local pttl = redis.call('PTTL', key)
    if pttl > 0 then redis.call('PEXPIRE', marker_key, pttl) end
  end
end
