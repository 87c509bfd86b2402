-- Publish a batch: every event into its topic stream and the firehose, or none at all.
-- Runs after epoch.lua, trim.lua, horizon.lua (prepended by realtime.storage.scripts).
-- KEYS: epoch, seq, firehose, trimmed (legacy), idempotency, rate bucket, new-topics bucket,
--       clock, aliases, then topic stream and marker x n
-- ARGV: candidate epoch, now ms, maxlen, ttl ms, firehose maxlen, idem ttl s, use idem,
--       fingerprint, rate (events/s, 0: unlimited), burst, new topics per minute (0: unlimited),
--       expiry margin ms, n, then topic, type, data, attrs, alias for each ('' for none)
-- CLOCK_EVERY_MS (how often the clock takes a point) is defined ahead of this file when it is
-- loaded (realtime.storage.scripts), from realtime.storage.keys.
local use_idem = ARGV[7] == '1'
if use_idem then
  local previous = redis.call('GET', KEYS[5])
  if previous then
    return {'dup', redis.call('GET', KEYS[1]) or '', previous}
  end
end
local now = tonumber(ARGV[2])
local n = tonumber(ARGV[13])
local FIRST_TOPIC_KEY, FIRST_TOPIC_ARG, ARGS_PER_EVENT = 10, 13, 5
local ALIASES = KEYS[9]

-- A token bucket of `rate` a second and `burst` at most, shared by every worker and host: its
-- tokens after refilling, and the answer if `cost` is more than it holds. Nothing is written.
local function refill(key, rate, burst, cost)
  local bucket = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(bucket[1]) or burst
  local ts = tonumber(bucket[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
  if tokens < cost then return tokens, tostring(math.ceil((cost - tokens) * 1000 / rate)) end
  return tokens, nil
end
local function spend(key, rate, burst, tokens, cost)
  redis.call('HSET', key, 'tokens', tostring(tokens - cost), 'ts', now)
  redis.call('PEXPIRE', key, math.ceil(burst * 1000 / rate) + 1000)
end

-- Every check before the first write: a refused publish writes nothing, buckets included.
local rate, burst = tonumber(ARGV[9]), tonumber(ARGV[10])
local event_tokens, topic_tokens
if rate > 0 then
  local wait
  event_tokens, wait = refill(KEYS[6], rate, burst, n)
  if wait then return {'limited', '', wait} end
end
local new_topics = {}
local created = 0
for i = 1, n do
  local topic = ARGV[FIRST_TOPIC_ARG + (i - 1) * ARGS_PER_EVENT + 1]
  if new_topics[topic] == nil then
    new_topics[topic] = redis.call('EXISTS', KEYS[FIRST_TOPIC_KEY + (i - 1) * 2]) == 0
    if new_topics[topic] then created = created + 1 end
  end
end
local per_minute = tonumber(ARGV[11])
if per_minute > 0 and created > 0 then
  local wait
  topic_tokens, wait = refill(KEYS[7], per_minute / 60, per_minute, created)
  if wait then return {'topics_limited', '', wait} end
end
if event_tokens then spend(KEYS[6], rate, burst, event_tokens, n) end
if topic_tokens then spend(KEYS[7], per_minute / 60, per_minute, topic_tokens, created) end

local epoch = current_epoch(KEYS[1], KEYS[2], ARGV[1])
local maxlen = tonumber(ARGV[3])
local ttl_ms = tonumber(ARGV[4])
local expiry_ms = ttl_ms + tonumber(ARGV[12])
-- A topic created (again) now: whatever an expired stream of it held was published before
-- now - ttl, so clients below that bound (taken before this publish's own seqs) are told it
-- was trimmed.
local bound = 0
if created > 0 and ttl_ms > 0 then bound = horizon(KEYS[8], KEYS[2], now, ttl_ms) end
local last = redis.call('INCRBY', KEYS[2], n)
local first = last - n + 1
for i = 1, n do
  local base = FIRST_TOPIC_ARG + (i - 1) * ARGS_PER_EVENT
  local topic, etype, data = ARGV[base + 1], ARGV[base + 2], ARGV[base + 3]
  local attrs, alias = ARGV[base + 4], ARGV[base + 5]
  local key = KEYS[FIRST_TOPIC_KEY + (i - 1) * 2]
  if new_topics[topic] then
    new_topics[topic] = false
    if bound > 0 then redis.call('SET', KEYS[FIRST_TOPIC_KEY + (i - 1) * 2 + 1], bound) end
  end
  local id = (first + i - 1) .. '-0'
  if attrs == '' and alias == '' then
    redis.call('XADD', key, id, 't', now, 'y', etype, 'd', data)
    redis.call('XADD', KEYS[3], id, 't', now, 'p', topic, 'y', etype, 'd', data, 'e', epoch)
  else
    local extra = {}
    if attrs ~= '' then table.insert(extra, 'x') table.insert(extra, attrs) end
    if alias ~= '' then
      table.insert(extra, 'm') table.insert(extra, alias)
      -- NX: a reused alias keeps pointing at its earliest event (Mercure draft 08).
      redis.call('ZADD', ALIASES, 'NX', first + i - 1, alias)
    end
    redis.call('XADD', key, id, 't', now, 'y', etype, 'd', data, unpack(extra))
    redis.call('XADD', KEYS[3], id, 't', now, 'p', topic, 'y', etype, 'd', data, 'e', epoch,
      unpack(extra))
  end
end
local trimmed = {}
-- A topic may run this far over maxlen before it is cut back (see trim.lua): 1/16 of it.
local slack = math.floor(maxlen / 16)
for i = 1, n do
  local topic = ARGV[FIRST_TOPIC_ARG + (i - 1) * ARGS_PER_EVENT + 1]
  if not trimmed[topic] then
    trimmed[topic] = true
    local key, mkey = KEYS[FIRST_TOPIC_KEY + (i - 1) * 2], KEYS[FIRST_TOPIC_KEY + (i - 1) * 2 + 1]
    if ttl_ms > 0 then
      redis.call('PEXPIRE', key, expiry_ms)
      redis.call('PEXPIRE', mkey, expiry_ms)
    end
    trim(key, mkey, maxlen, ttl_ms, now, slack)
  end
end
if ttl_ms > 0 then
  local newest = redis.call('ZRANGE', KEYS[8], -1, -1, 'WITHSCORES')
  if #newest == 0 or now - tonumber(newest[2]) >= CLOCK_EVERY_MS then
    redis.call('ZADD', KEYS[8], now, tostring(first - 1))
    redis.call('ZREMRANGEBYSCORE', KEYS[8], '-inf', '(' .. (now - expiry_ms - CLOCK_EVERY_MS))
  end
end
local dropped = redis.call('XTRIM', KEYS[3], 'MAXLEN', '~', tonumber(ARGV[5]))
-- An alias lives as long as the feed holds its event: when the feed lost entries, none below
-- its oldest one stays (most publishes trim nothing, MAXLEN ~ drops whole nodes).
if dropped > 0 and redis.call('ZCARD', ALIASES) > 0 then
  local oldest = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)
  if #oldest > 0 then
    local oldest_seq = tonumber(string.match(oldest[1][1], '^(%d+)'))
    redis.call('ZREMRANGEBYSCORE', ALIASES, '-inf', '(' .. oldest_seq)
  end
end
if use_idem then
  redis.call('SET', KEYS[5], ARGV[8] .. '|' .. first .. '|' .. n, 'EX', tonumber(ARGV[6]))
end
return {'ok', epoch, tostring(first)}
