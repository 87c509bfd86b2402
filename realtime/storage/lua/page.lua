-- One page of a topic's history, unless its epoch changed or it was trimmed past `after`.
-- Runs after marker.lua (prepended by realtime.storage.scripts).
-- KEYS: epoch, trimmed (legacy), topic stream, its marker.
-- ARGV: epoch, topic, after seq, up to seq, count
local epoch = redis.call('GET', KEYS[1])
if epoch ~= ARGV[1] then return {'epoch', {}} end
local after = tonumber(ARGV[3])
if marker(KEYS[4], KEYS[2], ARGV[2]) > after then return {'trimmed', {}} end
return {'ok', redis.call('XRANGE', KEYS[3], (after + 1) .. '-0', ARGV[4] .. '-0', 'COUNT', ARGV[5])}
