"""The Lua scripts `RedisStore` runs: each one read-modify-write that must be atomic across the
fleet. Times come from Redis's own clock (`TIME`), so instances need not agree on theirs.
Fractional results go back as strings: Redis truncates Lua numbers to integers."""

from __future__ import annotations

__all__ = [
    "ADD",
    "BEAT",
    "BUCKET",
    "FAILURE",
    "HOLD",
    "HOLDS",
    "INSTANCES",
    "RELEASE",
    "RESERVE",
    "SETTLE",
    "SUCCESS",
]

_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

#: KEYS[1] the bucket; ARGV per_minute, amount, mode (take | check | charge).
#: Returns the seconds until `amount` is there ("0" for now; always "0" for charge).
BUCKET = (
    _NOW_MS
    + """
local per_minute = tonumber(ARGV[1])
local amount = tonumber(ARGV[2])
local mode = ARGV[3]
local kept = redis.call('HMGET', KEYS[1], 'per_minute', 'level', 'updated')
local level = per_minute
if kept[1] and tonumber(kept[1]) == per_minute then
  local elapsed = math.max(0, now - tonumber(kept[3])) / 1000.0
  level = math.min(per_minute, tonumber(kept[2]) + elapsed * per_minute / 60.0)
end
local wait = 0
if amount > level then wait = (amount - level) * 60.0 / per_minute end
if mode == 'charge' or (mode == 'take' and wait == 0) then level = level - amount end
redis.call('HSET', KEYS[1], 'per_minute', ARGV[1], 'level', tostring(level), 'updated', now)
redis.call('PEXPIRE', KEYS[1], 120000)
if mode == 'charge' then return '0' end
return tostring(wait)
"""
)

#: KEYS[1] the counter; ARGV amount, ttl_ms. Returns the new value.
ADD = """
local total = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return total
"""

#: KEYS the counters, then (when ARGV[2] is "1") a marker; ARGV amount, marker flag, then each
#: counter's limit, then each counter's ttl_ms. Returns -1 when the amount was added to all, -2
#: (nothing added) when the marker is missing, else the 0-based index of the first spent one.
RESERVE = """
local n = #KEYS
if ARGV[2] == '1' then
  n = n - 1
  if redis.call('EXISTS', KEYS[n + 1]) == 0 then return -2 end
end
for i = 1, n do
  local value = tonumber(redis.call('GET', KEYS[i]) or '0')
  if value >= tonumber(ARGV[2 + i]) then return i - 1 end
end
for i = 1, n do
  redis.call('INCRBYFLOAT', KEYS[i], ARGV[1])
  if redis.call('PTTL', KEYS[i]) < 0 then redis.call('PEXPIRE', KEYS[i], ARGV[2 + n + i]) end
end
return -1
"""

#: KEYS the counters, then the settle's marker; ARGV amount, the marker's ttl_ms, then each
#: counter's ttl_ms. Adds the amount to every counter unless the marker is set, and sets it.
#: Returns the counters' values.
SETTLE = """
local n = #KEYS - 1
local apply = redis.call('EXISTS', KEYS[n + 1]) == 0
local out = {}
for i = 1, n do
  if apply then
    out[i] = redis.call('INCRBYFLOAT', KEYS[i], ARGV[1])
    if redis.call('PTTL', KEYS[i]) < 0 then redis.call('PEXPIRE', KEYS[i], ARGV[2 + i]) end
  else
    out[i] = redis.call('GET', KEYS[i]) or '0'
  end
end
if apply then redis.call('SET', KEYS[n + 1], '1', 'PX', ARGV[2]) end
return out
"""

#: KEYS[1] a provider's run of consecutive failures, "count|ms the latest failed call was sent";
#: ARGV ms since this one was sent, ttl_ms. Returns the run's new length.
FAILURE = (
    _NOW_MS
    + """
local sent = now - tonumber(ARGV[1])
local count = 0
local kept = redis.call('GET', KEYS[1])
if kept then
  local sep = string.find(kept, '|', 1, true)
  count = tonumber(string.sub(kept, 1, sep - 1))
  sent = math.max(sent, tonumber(string.sub(kept, sep + 1)))
end
count = count + 1
redis.call('SET', KEYS[1], count .. '|' .. string.format('%d', sent), 'PX', ARGV[2])
return count
"""
)

#: KEYS[1] the run (as FAILURE's); ARGV ms since the successful call was sent. Ends the run
#: unless a failed call was sent after it; 1 when it ended it.
SUCCESS = (
    _NOW_MS
    + """
local kept = redis.call('GET', KEYS[1])
if not kept then return 0 end
local sep = string.find(kept, '|', 1, true)
if now - tonumber(ARGV[1]) < tonumber(string.sub(kept, sep + 1)) then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""
)

#: KEYS[1] the hold; ARGV value, ms. Never shortens a longer hold.
HOLD = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
"""

#: KEYS[1] a claim, then keys to delete with it; ARGV[1] the owner. Deletes them all only when
#: the owner holds the claim (never a claim another took after the owner's ran out); 1 when it
#: did.
RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', unpack(KEYS))
return 1
"""

#: KEYS the holds. Returns value, ms left for each (false, 0 when unset).
HOLDS = """
local out = {}
for i = 1, #KEYS do
  local value = redis.call('GET', KEYS[i])
  out[#out + 1] = value
  out[#out + 1] = value and redis.call('PTTL', KEYS[i]) or 0
end
return out
"""

#: KEYS[1] the instance set, KEYS[2] this instance's summary; ARGV id, summary, ms.
BEAT = (
    _NOW_MS
    + """
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
return 1
"""
)

#: KEYS[1] the instance set; ARGV the summaries' key prefix. Returns id, summary, ms left each.
INSTANCES = (
    _NOW_MS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local key = ARGV[1] .. id
  local summary = redis.call('GET', key)
  if summary then
    out[#out + 1] = id
    out[#out + 1] = summary
    out[#out + 1] = redis.call('PTTL', key)
  end
end
return out
"""
)
