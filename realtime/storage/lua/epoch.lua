-- current_epoch(epoch_key, seq_key, spec): the epoch, created if there is none.
-- Shared by every script that reads the epoch. spec (the script's ARGV[1]) is
-- "<candidate> <known epoch> <high water>": the epoch to create if there is none, and the newest
-- seq this worker has seen in the epoch it knows. A counter below that high water means this
-- Redis came back without events we already delivered (an older snapshot, an AOF that lost its
-- last second): their ids would be handed out again, so a new epoch is started and every client
-- holding an old id gets `reset`.
local function current_epoch(epoch_key, seq_key, spec)
  local candidate, known, high = string.match(spec, '^(%S+) (%S+) (%d+)$')
  local epoch = redis.call('GET', epoch_key)
  if epoch and epoch == known and tonumber(redis.call('GET', seq_key) or '0') < tonumber(high) then
    epoch = nil
  end
  if not epoch then
    epoch = candidate
    redis.call('SET', epoch_key, epoch)
  end
  return epoch
end
