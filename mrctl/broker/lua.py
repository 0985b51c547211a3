"""The Lua scripts that make each multi-key state change of the task protocol atomic.

Shared conventions: times come from the Redis server clock (TIME, in ms); a task's `attempt`
is incremented by every claim and is the fencing token. A running task has one or more live
attempts (more than one only when speculative execution started a backup): field
`live:<attempt>` holds the worker of each, `live` counts them. Only a live attempt may commit,
fail or renew its lease; the first commit wins and ends every other attempt. The lease and
deadline sorted sets hold one member per live attempt, `<tid>@<attempt>`.
"""

from mrctl.broker import keys

# Push a token on a wake-up list (keys.wake, keys.progress) unless it already holds WAKE_MAX.
_WAKE = f"""
local function wake(key)
  if redis.call('LLEN', key) < {keys.WAKE_MAX} then redis.call('RPUSH', key, 1) end
end
"""

# The attempt that committed a task (keys.done: 4 bytes, big-endian, per task index), 0 while
# none has. GETRANGE and SETRANGE, which every Redis has (BITFIELD_RO came with 6.x); a read
# first, so that a script whose first command it is is never refused for memory.
_DONE = """
local function committed_attempt(done_key, tid)
  local at = 4 * tonumber(string.sub(tid, 3))
  local b = redis.call('GETRANGE', done_key, at, at + 3)
  if #b < 4 then return 0 end
  return ((string.byte(b, 1) * 256 + string.byte(b, 2)) * 256 + string.byte(b, 3)) * 256 + string.byte(b, 4)
end
local function set_committed(done_key, tid, attempt)
  local a = tonumber(attempt)
  redis.call('SETRANGE', done_key, 4 * tonumber(string.sub(tid, 3)),
    string.char(math.floor(a / 16777216) % 256, math.floor(a / 65536) % 256, math.floor(a / 256) % 256, a % 256))
end
"""

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# The attempt log (keys.attempt_log): an attempt's start, and its end with the outcome.
_LOG = """
local function log_start(key, tid, attempt, worker, backup)
  redis.call('RPUSH', key, cjson.encode({'s', tid, tonumber(attempt), worker, now, backup}))
end
local function log_end(key, tid, attempt, outcome, worker, msg, tb)
  redis.call('RPUSH', key, cjson.encode({'e', tid, tonumber(attempt), outcome, now, worker, msg or '', tb or ''}))
end
"""

# KEYS: queue, leases, deadlines, meta, claimed (the worker's last claim: keys.claimed), attempt log
# ARGV: task_prefix, worker, lease_ms, timeout_ms, chunk_prefix, part_prefix, reply_ttl_ms,
#       max_tasks, max_bytes, request id
# Returns a list of claims, each {tid, attempt, task fields (flat), input}: a map's chunk
# bytes, or a reduce's flat partition hash; read in the same atomic step, so a backup whose
# original commits meanwhile still gets its input. Ids of tasks that ended while queued are
# skipped. A batch (tiny tasks): after the first task, further queued map tasks are claimed
# while there are fewer than max_tasks and their chunks total at most max_bytes, each its own
# attempt with its own lease, deadline and log entry (fencing per task, as for one); a reduce
# task, a backup attempt or a retry is never batched (it goes back to the front, or runs alone).
# A retry is a task that failed, timed out, ran out of memory or was lost before (`failures` or
# `losses` set; a released attempt sets neither: it never ran): alone, it is blamed alone if it
# kills its worker or hangs again, and the tasks it would have held are not charged with it.
# Idempotent: a request that already claimed (its reply lost, the call retried) gets the same
# attempts again while they are live, and nothing once they have ended. The memo is the
# worker's one key, overwritten by its next claim: memory bounded by the workers.
CLAIM = _NOW + _LOG + """
local function answer(tid, attempt)
  local tkey = ARGV[1] .. tid
  local input
  if string.sub(tid, 1, 2) == 'm:' then
    input = redis.call('GET', ARGV[5] .. tid)
  else
    input = redis.call('HGETALL', ARGV[6] .. string.sub(tid, 3))
  end
  return {tid, attempt, redis.call('HGETALL', tkey), input}
end
local taken, members = {}, {}
local prior = redis.call('GET', KEYS[5])
local request, claimed = string.match(prior or '', '^(%S+)(.*)$')
if request and request == ARGV[10] then  -- only while those attempts still live: a reaped or beaten one is no answer
  for member in string.gmatch(claimed, '%S+') do
    local tid, attempt = string.match(member, '^(.*)@(%d+)$')
    if redis.call('HGET', ARGV[1] .. tid, 'live:' .. attempt) then
      taken[#taken + 1] = answer(tid, tonumber(attempt))
    end
  end
  if #taken == 0 then return false end
  return taken
end
if redis.call('HGET', KEYS[4], 'state') ~= 'running' then return false end
local max_tasks, max_bytes, bytes = tonumber(ARGV[8] or 1), tonumber(ARGV[9] or 0), 0
while #taken < max_tasks do
  local tid = redis.call('LPOP', KEYS[1])
  if not tid then break end
  local tkey = ARGV[1] .. tid
  local f = redis.call('HMGET', tkey, 'state', 'failures', 'losses')
  local state, retry = f[1], f[2] or f[3]
  if state == 'pending' or state == 'running' then
    local is_map = string.sub(tid, 1, 2) == 'm:'
    if #taken > 0 then  -- joining a batch: a pending map task, never tried, whose chunk still fits
      local size = -1
      if is_map and state == 'pending' and not retry then size = redis.call('STRLEN', ARGV[5] .. tid) end
      if size < 0 or bytes + size > max_bytes then
        redis.call('LPUSH', KEYS[1], tid)
        break
      end
      bytes = bytes + size
    elseif is_map then
      bytes = redis.call('STRLEN', ARGV[5] .. tid)
    end
    local attempt = redis.call('HINCRBY', tkey, 'attempt', 1)
    redis.call('HINCRBY', tkey, 'live', 1)
    redis.call('HSET', tkey, 'state', 'running', 'worker', ARGV[2], 'claimed_ms', now,
      'live:' .. attempt, ARGV[2])
    local member = tid .. '@' .. attempt
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), member)
    redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), member)
    log_start(KEYS[6], tid, attempt, ARGV[2], state == 'running' and 1 or 0)  -- running: a backup
    taken[#taken + 1] = answer(tid, attempt)
    members[#members + 1] = member
    if state == 'running' or not is_map or retry then break end  -- a backup, a reduce, a retry: alone
  end
end
if #taken == 0 then return false end
redis.call('SET', KEYS[5], ARGV[10] .. ' ' .. table.concat(members, ' '), 'PX', ARGV[7])
return taken
"""

# Ends every live attempt of a task (lease and deadline members too); each one but `winner`
# is logged as cancelled and returned as a 'cancelled:<attempt>' field name, which the
# committed task keeps so that the attempt's next heartbeat tells its worker to stop it.
_END_ALL = """
local function end_all(tkey, tid, leases, deadlines, winner, attempt_log)
  local f = redis.call('HGETALL', tkey)
  local cancelled = {}
  for i = 1, #f, 2 do
    local a = string.match(f[i], '^live:(%d+)$')
    if a then
      if a ~= winner then
        cancelled[#cancelled + 1] = 'cancelled:' .. a
        cancelled[#cancelled + 1] = 1
        log_end(attempt_log, tid, a, 'cancelled', f[i + 1], 'another attempt committed first')
      end
      redis.call('ZREM', leases, tid .. '@' .. a)
      redis.call('ZREM', deadlines, tid .. '@' .. a)
    end
  end
  return cancelled
end
"""

# Counters of any size, exact: Redis's HINCRBY stops at 64 bits (and a script that errors
# half-way keeps what it wrote), so a counter past 17 digits is summed here as a decimal string
# in 7-digit limbs (exact in Lua's doubles). `count_check` validates a counter and its amount
# before a script writes anything; `count_add` then cannot fail.
_COUNT = """
local function split_int(s)  -- sign ('' or '-') and digits without leading zeros; nil if no int
  local sign, digits = string.match(s, '^(%-?)(%d+)$')
  if not sign then return nil end
  digits = string.gsub(digits, '^0+', '')
  if digits == '' then return '', '0' end
  return sign, digits
end
local function limbs_joined(limbs)  -- little-endian 7-digit limbs -> decimal digits
  local n = #limbs
  while n > 1 and limbs[n] == 0 do n = n - 1 end
  local parts = {string.format('%d', limbs[n])}
  for k = n - 1, 1, -1 do parts[#parts + 1] = string.format('%07d', limbs[k]) end
  return table.concat(parts)
end
local function limb(s, i)
  if i < 1 then return 0 end
  return tonumber(string.sub(s, math.max(1, i - 6), i))
end
local function mag_add(a, b)
  local out, carry, i, j = {}, 0, #a, #b
  while i > 0 or j > 0 or carry > 0 do
    local s = limb(a, i) + limb(b, j) + carry
    if s >= 10000000 then s, carry = s - 10000000, 1 else carry = 0 end
    out[#out + 1] = s
    i, j = i - 7, j - 7
  end
  return limbs_joined(out)
end
local function mag_sub(a, b)  -- a >= b
  local out, borrow, i, j = {}, 0, #a, #b
  while i > 0 do
    local d = limb(a, i) - limb(b, j) - borrow
    if d < 0 then d, borrow = d + 10000000, 1 else borrow = 0 end
    out[#out + 1] = d
    i, j = i - 7, j - 7
  end
  return limbs_joined(out)
end
local function mag_less(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
local function big_add(a, b)
  local sa, ma = split_int(a)
  local sb, mb = split_int(b)
  local sign, mag
  if sa == sb then
    sign, mag = sa, mag_add(ma, mb)
  elseif mag_less(ma, mb) then
    sign, mag = sb, mag_sub(mb, ma)
  else
    sign, mag = sa, mag_sub(ma, mb)
  end
  if mag == '0' then return '0' end
  return sign .. mag
end
local function count_check(hash, field, amount)  -- nil, or why the counter cannot be added to
  if not split_int(amount) then return 'amount ' .. amount .. ' of ' .. field .. ' is not an integer' end
  local current = redis.call('HGET', hash, field)
  if current and not split_int(current) then return field .. ' holds ' .. current .. ', not an integer' end
  return nil
end
local function count_add(hash, field, amount)
  local current = redis.call('HGET', hash, field) or '0'
  local _, mc = split_int(current)
  local _, ma = split_int(amount)
  if #mc <= 17 and #ma <= 17 then  -- the sum stays far inside 64 bits
    local sign = split_int(amount)
    redis.call('HINCRBY', hash, field, sign .. ma)  -- canonical: HINCRBY refuses '007' and '-0'
  else
    redis.call('HSET', hash, field, big_add(current, amount))
  end
end
"""

# KEYS: task, leases, deadlines, stats, events, consumed (input key to delete), reply (of
#       this request), progress (the master's wake-up list), attempt log, done (of the task's
#       kind), late (the run's, keys.late), the request's reply key under the run (for a
#       late refusal: nothing of a dropped step is written back)
# ARGV: tid, attempt, worker, reply_ttl_ms, n_counters, (counter, increment) * n, then
#       (key, field, value)* triples to write; an empty field means SET key value, else HSET.
# Returns 1 (committed) or 0 (refused). Idempotent: a request retried after its reply was
# lost gets the first answer, without a second refusal counted (a success is known by `done`,
# a refusal by the request's reply key). A committed task leaves only its attempt in `done`
# (its hash is deleted; it keeps its cancelled:<attempt> fields when backups ran), so that a
# finished task costs 4 bytes of Redis. A task whose step already ended (its keys dropped, no
# `done`) is a zombie of an older step: refused and counted in the run's `late`, nothing of
# that step written back.
# All or nothing: every check that could stop the script (its counters' amounts and the
# values they add to) runs before its first write, and no write after it can fail (Redis
# refuses a script for memory only at its first write). A counter that cannot be added to is a
# Redis error reply naming it, with nothing written.
COMMIT = _NOW + _LOG + _WAKE + _END_ALL + _COUNT + _DONE + """
local prior = redis.call('GET', KEYS[7])
if prior then return tonumber(prior) end
local won = committed_attempt(KEYS[10], ARGV[1])
if won == tonumber(ARGV[2]) then return 1 end  -- this very commit, sent again
local st = redis.call('HMGET', KEYS[1], 'state', 'live:' .. ARGV[2], 'live')
if not st[1] and won == 0 then
  if redis.call('EXISTS', KEYS[12]) == 1 then return 0 end  -- sent again: counted once
  redis.call('HINCRBY', KEYS[11], 'refused', 1)
  redis.call('SET', KEYS[12], '0', 'PX', ARGV[4])
  return 0
end
if st[1] ~= 'running' or not st[2] then
  redis.call('HINCRBY', KEYS[4], 'refused', 1)
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', 1000, '*', 'kind', 'refused', 'tid', ARGV[1],
    'attempt', ARGV[2], 'worker', ARGV[3],
    'msg', 'late commit refused: attempt ' .. ARGV[2] .. ' was superseded')
  log_end(KEYS[9], ARGV[1], ARGV[2], 'refused', ARGV[3], 'late commit refused: the attempt was superseded')
  redis.call('SET', KEYS[7], '0', 'PX', ARGV[4])
  return 0
end
local i = 6
for _ = 1, tonumber(ARGV[5]) do
  local why = count_check(KEYS[4], ARGV[i], ARGV[i + 1])
  if why then return redis.error_reply('ERR commit of ' .. ARGV[1] .. ' refused before any write: ' .. why) end
  i = i + 2
end
i = 6
for _ = 1, tonumber(ARGV[5]) do
  count_add(KEYS[4], ARGV[i], ARGV[i + 1])
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
local cancelled = {}
if st[3] == '1' then  -- the only live attempt (the usual case): nothing else to end
  local member = ARGV[1] .. '@' .. ARGV[2]
  redis.call('ZREM', KEYS[2], member)
  redis.call('ZREM', KEYS[3], member)
else
  cancelled = end_all(KEYS[1], ARGV[1], KEYS[2], KEYS[3], ARGV[2], KEYS[9])
end
log_end(KEYS[9], ARGV[1], ARGV[2], 'committed', ARGV[3])
redis.call('DEL', KEYS[1])
if #cancelled > 0 then redis.call('HSET', KEYS[1], unpack(cancelled)) end
set_committed(KEYS[10], ARGV[1], ARGV[2])
redis.call('DEL', KEYS[6])
wake(KEYS[8])
return 1
"""

# KEYS: task, queue, chunk (a map task's input; unused for a reduce task), wake, done (of
#       the task's kind)
# ARGV: tid, has_chunk ('1' | '0'), chunk bytes, then (field, value) pairs of the task
# Queues a new task exactly once: a call retried after its reply was lost finds the task
# already there, or committed, and changes nothing (else it would run twice).
ADD_TASK = _WAKE + _DONE + """
if redis.call('EXISTS', KEYS[1]) == 1 or committed_attempt(KEYS[5], ARGV[1]) > 0 then return 0 end
if ARGV[2] == '1' then redis.call('SET', KEYS[3], ARGV[3]) end
redis.call('HSET', KEYS[1], 'state', 'pending', 'attempt', 0, unpack(ARGV, 4))
redis.call('RPUSH', KEYS[2], ARGV[1])
wake(KEYS[4])
return 1
"""

# KEYS: queue, wake, done (of map tasks)
# ARGV: task_prefix, chunk_prefix, then per task: tid, chunk bytes, its fields as a JSON object
#       of strings
# ADD_TASK for a batch of map tasks in one call (the master feeds tiny chunks by the thousand):
# each new task exactly once, so a call retried after its reply was lost queues nothing twice;
# a wake token per task queued, up to WAKE_MAX. Returns how many were queued.
ADD_MAP_TASKS = _WAKE + _DONE + """
local added = 0
for i = 3, #ARGV, 3 do
  local tid = ARGV[i]
  local tkey = ARGV[1] .. tid
  if redis.call('EXISTS', tkey) == 0 and committed_attempt(KEYS[3], tid) == 0 then
    redis.call('SET', ARGV[2] .. tid, ARGV[i + 1])
    local flat = {'state', 'pending', 'attempt', 0}
    for k, v in pairs(cjson.decode(ARGV[i + 2])) do
      flat[#flat + 1] = k
      flat[#flat + 1] = v
    end
    redis.call('HSET', tkey, unpack(flat))
    redis.call('RPUSH', KEYS[1], tid)
    added = added + 1
    wake(KEYS[2])
  end
end
return added
"""

# KEYS: task, queue, chunk, source (the previous step's output: a string, or a hash), wake,
#       done (of map tasks)
# ARGV: tid, field of the source hash ('' when the source is a string), then (field, value)
# pairs of the task
# Queues a map task of a later step whose input is a previous step's output, moved (not
# copied through the master) into the task's chunk. Once, like ADD_TASK: a retried call finds
# the task there and moves nothing. A reduce output (a string) is written by every reduce
# commit, so an absent one is data lost: -1, nothing written (never an empty input); a
# map-only step's map writes no field for an empty output, so an absent field is empty.
ADD_STEP_TASK = _WAKE + _DONE + """
if redis.call('EXISTS', KEYS[1]) == 1 or committed_attempt(KEYS[6], ARGV[1]) > 0 then return 0 end
if ARGV[2] == '' then
  if redis.call('EXISTS', KEYS[4]) == 0 then return -1 end
  redis.call('RENAME', KEYS[4], KEYS[3])
else
  redis.call('SET', KEYS[3], redis.call('HGET', KEYS[4], ARGV[2]) or '')
  redis.call('HDEL', KEYS[4], ARGV[2])
end
redis.call('HSET', KEYS[1], 'state', 'pending', 'attempt', 0, unpack(ARGV, 3))
redis.call('RPUSH', KEYS[2], ARGV[1])
wake(KEYS[5])
return 1
"""

# KEYS: task, queue, wake   ARGV: tid
# Queue a backup attempt at the front, only while exactly one attempt runs (speculative
# execution). Returns 1 if queued.
BACKUP = _WAKE + """
local st = redis.call('HMGET', KEYS[1], 'state', 'live')
if st[1] ~= 'running' or st[2] ~= '1' then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[1])
wake(KEYS[3])
return 1
"""

# Shared by FAIL and REAP.  KEYS: leases, deadlines, stats, events, queue, meta, wake, progress,
# attempt log
# ARGV[1]: task_prefix, ARGV[2]: max_attempts (attempts per task whose user code failed:
# raised, timed out, ran out of memory), ARGV[3]: max lost attempts (whose worker died or went
# silent: not the code's fault, so counted apart, like Hadoop's KILLED vs FAILED, and allowed
# far more often).
# Kind 'released' (a worker gives back a task it claimed but never started: the rest of a batch
# that ran past its slice, or a claim it will not run) is logged as such and requeued at the
# front, and counts nothing: no losses, no failures, no stats, no error fields, no event.
# Returns 0: not a live attempt (ignored), 1: retried (requeued, or another attempt is still
# running), 2: the task failed for good (a limit reached and no attempt still running).
_FAIL_ATTEMPT = _LOG + _WAKE + """
local function fail_attempt(tid, attempt, kind, msg, tb)
  local tkey = ARGV[1] .. tid
  local st = redis.call('HMGET', tkey, 'state', 'live:' .. attempt)
  if st[1] ~= 'running' or not st[2] then return 0 end
  local worker = st[2]
  log_end(KEYS[9], tid, attempt, kind, worker, msg, tb)
  redis.call('HDEL', tkey, 'live:' .. attempt)
  redis.call('ZREM', KEYS[1], tid .. '@' .. attempt)
  redis.call('ZREM', KEYS[2], tid .. '@' .. attempt)
  local live = redis.call('HINCRBY', tkey, 'live', -1)
  if kind == 'released' then  -- given back unstarted by its worker: counts nothing
    if live <= 0 then
      redis.call('HSET', tkey, 'state', 'pending', 'live', 0)
      redis.call('LREM', KEYS[5], 0, tid)
      redis.call('LPUSH', KEYS[5], tid)  -- at the front: it was next in line
      wake(KEYS[7])
    end
    return 1
  end
  local counted, limit = 'failures', tonumber(ARGV[2])
  if kind == 'lost' then counted, limit = 'losses', tonumber(ARGV[3]) end
  local count = redis.call('HINCRBY', tkey, counted, 1)
  redis.call('HSET', tkey, 'error', msg, 'traceback', tb, 'error_worker', worker,
    'error_kind', kind, 'error_attempt', attempt)
  if kind == 'lost' then
    redis.call('HINCRBY', KEYS[3], 'lost', 1)
  else
    redis.call('HINCRBY', KEYS[3], 'failed_attempts', 1)
  end
  if kind == 'timeout' then redis.call('HINCRBY', KEYS[3], 'timeouts', 1) end
  if count >= limit and live <= 0 then
    redis.call('HSET', tkey, 'state', 'failed')
    redis.call('HSET', KEYS[6], 'state', 'failed', 'failed_task', tid)
    redis.call('HINCRBY', KEYS[3], 'failures', 1)
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', 1000, '*', 'kind', 'failed', 'tid', tid,
      'attempt', attempt, 'worker', worker, 'msg', kind .. ': ' .. msg)
    wake(KEYS[8])
    return 2
  end
  local note = '; another attempt still runs'  -- and decides the task's fate
  if live <= 0 then
    note = ''
    redis.call('HSET', tkey, 'state', 'pending', 'live', 0)
    redis.call('LREM', KEYS[5], 0, tid)  -- a queued backup entry would start a second attempt
    redis.call('RPUSH', KEYS[5], tid)
    redis.call('HINCRBY', KEYS[3], 'retries', 1)
    wake(KEYS[7])
  end
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', 1000, '*', 'kind', 'retry', 'tid', tid,
    'attempt', attempt, 'worker', worker, 'msg', kind .. ': ' .. msg .. note)
  return 1
end
"""

# ARGV[4..]: tid, attempt, kind (error | timeout | oom | lost | released), message, traceback
FAIL = _NOW + _FAIL_ATTEMPT + """
return fail_attempt(ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8])
"""

# End (retry or fail) every live attempt whose lease or timeout deadline has passed.
# ARGV[4]: task timeout in seconds (for the message).  Returns how many attempts were ended.
REAP = _NOW + _FAIL_ATTEMPT + """
local ended = 0
local function reap(zset, kind, why)
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', zset, '-inf', now)) do
    local tid, attempt = string.match(member, '^(.*)@(%d+)$')
    redis.call('ZREM', zset, member)
    if tid then
      local worker = redis.call('HGET', ARGV[1] .. tid, 'live:' .. attempt)
      local msg = why .. ' (worker ' .. tostring(worker) .. ')'
      if fail_attempt(tid, attempt, kind, msg, '') > 0 then ended = ended + 1 end
    end
  end
end
reap(KEYS[1], 'lost', 'lease expired: no heartbeat, the worker died or stalled')
reap(KEYS[2], 'timeout', 'exceeded task_timeout of ' .. ARGV[4] .. 's')
return ended
"""

# KEYS: workers, beats, leases, task, done (of the task's kind)
# ARGV: worker, info_json, tid ('' = idle), attempt, lease_ms, then the members
#       ("<tid>@<attempt>") of the other attempts the worker holds (the rest of a batch:
#       unstarted, or run and waiting for the batch's commit)
# Renews the lease of every attempt the worker holds that is still live (ZADD XX: an ended
# attempt's member is gone and stays gone). Returns, for the attempt it runs (tid): 1 while it
# is still live (or it has none); 2 once another attempt of its task committed while it was
# live (cancelled: stop working on it), or its step ended; 0 once it ended otherwise (reaped: a
# zombie, whose commit will be refused).
BEAT = _NOW + _DONE + """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], now)
for i = 6, #ARGV do
  redis.call('ZADD', KEYS[3], 'XX', now + tonumber(ARGV[5]), ARGV[i])
end
if ARGV[3] == '' then return 1 end
local st = redis.call('HMGET', KEYS[4], 'state', 'live:' .. ARGV[4], 'cancelled:' .. ARGV[4])
if st[1] == 'running' and st[2] then
  redis.call('ZADD', KEYS[3], 'XX', now + tonumber(ARGV[5]), ARGV[3] .. '@' .. ARGV[4])
  return 1
end
if st[3] then return 2 end
if not st[1] and committed_attempt(KEYS[5], ARGV[3]) == 0 then
  return 2  -- its step ended and was dropped: stop it, like a beaten backup
end
return 0
"""

# Server time in ms, for the ages shown in views.
NOW = _NOW + "return now"

# KEYS: source (a partition hash or an output string), taken (a key of this take's own)
# Take committed data out of Redis: the source moves to `taken` (only the first time: a call
# sent again after its reply was lost finds `taken` there, and a commit landing meanwhile
# makes a fresh source, taken next time), and its content is returned; the caller deletes
# `taken` once the data is on disk. A lost reply then loses no data.
_TAKE = """
if redis.call('EXISTS', KEYS[2]) == 0 and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('RENAME', KEYS[1], KEYS[2])
end
"""
TAKE_STRING = _TAKE + "return redis.call('GET', KEYS[2])"
TAKE_HASH = _TAKE + "return redis.call('HGETALL', KEYS[2])"

# KEYS: source hash, taken   ARGV: fields
# _TAKE for some fields of a hash (a map-only step's committed outputs, those small enough to
# come back): the first call moves the fields present to `taken`; a call sent again finds it.
TAKE_FIELDS = """
if redis.call('EXISTS', KEYS[2]) == 0 then
  for _, f in ipairs(ARGV) do
    local v = redis.call('HGET', KEYS[1], f)
    if v then
      redis.call('HSET', KEYS[2], f, v)
      redis.call('HDEL', KEYS[1], f)
    end
  end
end
return redis.call('HGETALL', KEYS[2])
"""

# KEYS: feed (keys.feed), fed (keys.fed)   ARGV: feed name (its field in fed), first, items
# Append a window of items to a reduce attempt's feed iff the feed holds exactly `first` items
# so far (fed's field counts them), and count them: a push sent again after its reply was lost
# appends nothing twice. Each item is "<seq>\n<blob>", seq counting from 0. Returns the count.
FEED_PUSH = """
local pushed = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if pushed ~= tonumber(ARGV[2]) then return pushed end
for i = 3, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
redis.call('HSET', KEYS[2], ARGV[1], pushed + #ARGV - 2)
return pushed + #ARGV - 2
"""

# KEYS: feed   ARGV: seq (the item the worker wants next)
# The worker's take: drop the items before `seq` (the worker has them: asking for the next one
# acknowledges them) and return item `seq` without removing it, or nil while it has not come.
# A take sent again after its reply was lost returns the same item: none is lost or repeated.
FEED_TAKE = """
local want = tonumber(ARGV[1])
while true do
  local head = redis.call('LINDEX', KEYS[1], 0)
  if not head then return false end
  local cut = string.find(head, '\\n', 1, true)
  if tonumber(string.sub(head, 1, cut - 1)) >= want then return head end
  redis.call('LPOP', KEYS[1])
end
"""

# KEYS: a hash. Returns [field, bytes of its value, ...] for every field, in one round trip.
FIELD_SIZES = """
local sizes = {}
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  sizes[#sizes + 1] = f
  sizes[#sizes + 1] = redis.call('HSTRLEN', KEYS[1], f)
end
return sizes
"""

# KEYS: lock   ARGV: holder (the value its run set), ttl_ms
# Renew a warm cluster's lock iff this run still holds it. Returns 1 if renewed, 0 if not held.
RENEW_LOCK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS: lock, current   ARGV: holder, run id
# Release a warm cluster's lock iff this run holds it, and stop pointing the workers at the
# run (current names the run or one of its steps, <run>.s<n>). Returns 1 if released.
RELEASE_LOCK = """
local current = redis.call('GET', KEYS[2])
if current == ARGV[2] or (current and string.sub(current, 1, #ARGV[2] + 2) == ARGV[2] .. '.s') then
  redis.call('DEL', KEYS[2])
end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""
