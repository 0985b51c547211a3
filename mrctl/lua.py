"""The Lua scripts that make each multi-key state change of the task protocol atomic.

Shared conventions: times come from the Redis server clock (TIME, in ms); a task's `attempt`
is incremented by every claim and is the fencing token; only the `running` task whose
attempt matches may commit, fail or renew its lease.
"""

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: queue, leases, deadlines, meta   ARGV: task_prefix, worker, lease_ms, timeout_ms
CLAIM = _NOW + """
if redis.call('HGET', KEYS[4], 'state') ~= 'running' then return false end
local tid = redis.call('LPOP', KEYS[1])
if not tid then return false end
local tkey = ARGV[1] .. tid
local attempt = redis.call('HINCRBY', tkey, 'attempt', 1)
redis.call('HSET', tkey, 'state', 'running', 'worker', ARGV[2], 'claimed_ms', now)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), tid)
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), tid)
return {tid, attempt}
"""

# KEYS: task, leases, deadlines, stats, events, consumed (input key to delete)
# ARGV: tid, attempt, worker, n_counters, (counter, increment) * n, then (key, field, value)*
#       triples to write; an empty field means SET key value, else HSET key field value.
COMMIT = """
local st = redis.call('HMGET', KEYS[1], 'state', 'attempt')
if st[1] ~= 'running' or st[2] ~= ARGV[2] then
  redis.call('HINCRBY', KEYS[4], 'refused', 1)
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', 1000, '*', 'kind', 'refused', 'tid', ARGV[1],
    'attempt', ARGV[2], 'worker', ARGV[3],
    'msg', 'late commit refused: attempt ' .. ARGV[2] .. ' was superseded')
  return 0
end
local i = 5
for _ = 1, tonumber(ARGV[4]) do
  redis.call('HINCRBY', KEYS[4], ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i <= #ARGV do
  if ARGV[i + 1] == '' then
    redis.call('SET', ARGV[i], ARGV[i + 2])
  else
    redis.call('HSET', ARGV[i], ARGV[i + 1], ARGV[i + 2])
  end
  i = i + 3
end
redis.call('HSET', KEYS[1], 'state', 'done', 'committed', ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[6])
return 1
"""

# Shared by FAIL and REAP.  KEYS: leases, deadlines, stats, events, queue, meta
# ARGV[1]: task_prefix, ARGV[2]: max_attempts
# Returns 0: not the current running attempt (ignored), 1: requeued, 2: task failed for good.
_FAIL_ATTEMPT = """
local function fail_attempt(tid, attempt, worker, kind, msg, tb)
  local tkey = ARGV[1] .. tid
  local st = redis.call('HMGET', tkey, 'state', 'attempt')
  if st[1] ~= 'running' or st[2] ~= attempt then return 0 end
  redis.call('ZREM', KEYS[1], tid)
  redis.call('ZREM', KEYS[2], tid)
  redis.call('HINCRBY', tkey, 'failures', 1)
  redis.call('HSET', tkey, 'error', msg, 'traceback', tb, 'error_worker', worker,
    'error_kind', kind, 'error_attempt', attempt)
  if kind == 'lost' then redis.call('HINCRBY', KEYS[3], 'lost', 1) end
  if kind == 'timeout' then redis.call('HINCRBY', KEYS[3], 'timeouts', 1) end
  if tonumber(attempt) >= tonumber(ARGV[2]) then
    redis.call('HSET', tkey, 'state', 'failed')
    redis.call('HSET', KEYS[6], 'state', 'failed', 'failed_task', tid)
    redis.call('HINCRBY', KEYS[3], 'failures', 1)
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', 1000, '*', 'kind', 'failed', 'tid', tid,
      'attempt', attempt, 'worker', worker, 'msg', kind .. ': ' .. msg)
    return 2
  end
  redis.call('HSET', tkey, 'state', 'pending')
  redis.call('RPUSH', KEYS[5], tid)
  redis.call('HINCRBY', KEYS[3], 'retries', 1)
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', 1000, '*', 'kind', 'retry', 'tid', tid,
    'attempt', attempt, 'worker', worker, 'msg', kind .. ': ' .. msg)
  return 1
end
"""

# ARGV[3..]: tid, attempt, worker, kind, message, traceback
FAIL = _FAIL_ATTEMPT + """
return fail_attempt(ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8])
"""

# Requeue (or fail) every running attempt whose lease or timeout deadline has passed.
# ARGV[3]: task timeout in seconds (for the message).  Returns how many attempts were ended.
REAP = _NOW + _FAIL_ATTEMPT + """
local ended = 0
local function reap(zset, kind, why)
  for _, tid in ipairs(redis.call('ZRANGEBYSCORE', zset, '-inf', now)) do
    local f = redis.call('HMGET', ARGV[1] .. tid, 'attempt', 'worker')
    local msg = why .. ' (worker ' .. tostring(f[2]) .. ')'
    if fail_attempt(tid, f[1], f[2] or '', kind, msg, '') > 0 then ended = ended + 1 end
    redis.call('ZREM', zset, tid)
  end
end
reap(KEYS[1], 'lost', 'lease expired: no heartbeat, the worker died or stalled')
reap(KEYS[2], 'timeout', 'exceeded task_timeout of ' .. ARGV[3] .. 's')
return ended
"""

# KEYS: workers, beats, leases, task   ARGV: worker, info_json, tid ('' = idle), attempt, lease_ms
# Returns 1 while the worker's attempt is still current (or it has none), 0 once superseded.
BEAT = _NOW + """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], now)
if ARGV[3] == '' then return 1 end
local st = redis.call('HMGET', KEYS[4], 'state', 'attempt')
if st[1] == 'running' and st[2] == ARGV[4] then
  redis.call('ZADD', KEYS[3], 'XX', now + tonumber(ARGV[5]), ARGV[3])
  return 1
end
return 0
"""

# Server time in ms, for the ages shown in views.
NOW = _NOW + "return now"
