-- Can a client at <claimed epoch>-<after> be replayed exactly on these topics?
-- Runs after epoch.lua, trim.lua, marker.lua, horizon.lua (prepended by realtime.storage.scripts).
-- KEYS: epoch, seq, trimmed (legacy), clock, then topic stream and marker x n
-- ARGV: candidate epoch, claimed epoch ('' for a fresh client), after seq, now ms, maxlen, ttl ms,
--       then the topics
local epoch = current_epoch(KEYS[1], KEYS[2], ARGV[1])
local head = tonumber(redis.call('GET', KEYS[2]) or '0')
local claimed, after = ARGV[2], tonumber(ARGV[3])
if claimed == '' then return {'fresh', epoch, tostring(head)} end
if claimed ~= epoch then return {'epoch', epoch, tostring(head)} end
if after > head then return {'unknown_id', epoch, tostring(head)} end
local now, maxlen, ttl_ms = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local bound = nil
for i = 1, (#KEYS - 4) / 2 do
  local key, mkey, topic = KEYS[3 + 2 * i], KEYS[4 + 2 * i], ARGV[6 + i]
  trim(key, mkey, maxlen, ttl_ms, now, 0)
  if marker(mkey, KEYS[3], topic) > after then return {'trimmed', epoch, tostring(head)} end
  if ttl_ms > 0 and redis.call('EXISTS', key) == 0 then
    -- No stream: if the topic had one, it expired, with events published before now - ttl.
    bound = bound or horizon(KEYS[4], KEYS[2], now, ttl_ms)
    if bound > after then return {'trimmed', epoch, tostring(head)} end
  end
end
return {'ok', epoch, tostring(head)}
