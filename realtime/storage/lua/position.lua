-- The epoch and head read together, creating the epoch.
-- Runs after epoch.lua (prepended by realtime.storage.scripts).
-- KEYS: epoch, seq.  ARGV: candidate epoch.
local epoch = current_epoch(KEYS[1], KEYS[2], ARGV[1])
return {epoch, redis.call('GET', KEYS[2]) or '0'}
