-- marker(marker_key, legacy_key, topic): the highest seq known trimmed from a topic: its marker
-- key, or a marker of the old hash.
local function marker(marker_key, legacy_key, topic)
  local own = tonumber(redis.call('GET', marker_key) or '0')
  local old = tonumber(redis.call('HGET', legacy_key, topic) or '0')
  return math.max(own, old)
end
