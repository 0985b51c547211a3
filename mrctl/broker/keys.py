"""Every Redis key mrctl uses, and nothing else builds one. These strings are a wire protocol
between the master and the workers (pinned in tests/test_protocol.py).

Task ids: "m:<i>" for map task i (0-based, input order), "r:<r>" for reduce partition r, and
attempt refs "<tid>@<attempt>", are built and parsed by mrctl.io.task_ids only.
Times stored in keys are milliseconds of the Redis server clock (TIME), so that the master and
workers on other hosts never compare their own clocks.
"""

from __future__ import annotations

PREFIX = "mrctl"


# mrctl:current -> string: id of the job workers should serve (set by the master, one per cluster)
def current_job() -> str:
    return f"{PREFIX}:current"


# mrctl:workers -> hash: worker name -> JSON {state, task, attempt, tasks_done, pid, job}
def workers() -> str:
    return f"{PREFIX}:workers"


# mrctl:beats -> hash: worker name -> last heartbeat (ms, Redis clock)
def beats() -> str:
    return f"{PREFIX}:beats"


# mrctl:wake -> list of tokens ("1"), at most WAKE_MAX: a task was queued or requeued, or a job
#   was published or ended. An idle worker blocks on it (BLPOP) instead of polling; a token is
#   a hint to look, so a surplus is harmless and a missing one costs at most the BLPOP timeout
def wake() -> str:
    return f"{PREFIX}:wake"


WAKE_MAX = 64


def job_prefix(job: str) -> str:
    return f"{PREFIX}:{job}:"


# mrctl:<job>:meta -> hash: name, module, mapper, reducer, combiner, reducers, max_attempts,
#   task_timeout, encoding_errors, bad_records (fail|skip), bad_records_max ('' = no limit),
#   sort_values (1: sort each key's values for the reducer), speculative (1: workers claim one
#   task at a time, never a batch of tiny ones),
#   state (running|succeeded|failed|cancelled), phase, failed_task
def meta(job: str) -> str:
    return f"{job_prefix(job)}meta"


# mrctl:<job>:code -> hash: file name -> source text, of the job modules and the sibling modules
#   they import (mrctl.spec.job_files): the job's code travels as source
def code(job: str) -> str:
    return f"{job_prefix(job)}code"


# mrctl:<job>:queue -> list: ids of tasks waiting for a worker (RPUSH, LPOP: FIFO)
def queue(job: str) -> str:
    return f"{job_prefix(job)}queue"


# mrctl:<job>:task:<tid> -> hash: kind, index, state (pending|running|failed), attempt
#   (incremented at each claim), live (number of live attempts), live:<attempt> -> worker for
#   each live attempt, worker, claimed_ms, failures, error, traceback,
#   and for maps the input position: file, start, end, first_line. Deleted by its commit (the
#   winning attempt goes to `done`), but for cancelled:<attempt> fields of backups it beat
def task_prefix(job: str) -> str:
    return f"{job_prefix(job)}task:"


def task(job: str, tid: str) -> str:
    return f"{task_prefix(job)}{tid}"


# mrctl:<job>:leases -> zset: "<tid>@<attempt>" of each live attempt -> lease deadline (ms);
#   renewed by the heartbeat
def leases(job: str) -> str:
    return f"{job_prefix(job)}leases"


# mrctl:<job>:deadlines -> zset: "<tid>@<attempt>" -> claimed_ms + task_timeout (ms); never renewed
def deadlines(job: str) -> str:
    return f"{job_prefix(job)}deadlines"


# mrctl:<job>:chunk:<tid> -> string: the input bytes of map task tid; deleted by its commit
def chunk_prefix(job: str) -> str:
    return f"{job_prefix(job)}chunk:"


def chunk(job: str, tid: str) -> str:
    return f"{chunk_prefix(job)}{tid}"


# mrctl:<job>:part:<r> -> hash: map index -> msgpack blob of that map's committed pairs for
#   partition r; written only by a successful commit, deleted by reduce r's commit
def part_prefix(job: str) -> str:
    return f"{job_prefix(job)}part:"


def part(job: str, r: int) -> str:
    return f"{part_prefix(job)}{r}"


# mrctl:<job>:feed:<r>:<attempt> -> list of "<seq>\n<blob>": a partition too large for Redis
#   at once, fed to attempt `attempt` of reduce r a window at a time: the master appends its
#   map blobs in map index order from its spill file (mrctl.master.partition_feed), then an
#   empty blob (the end), seq counting from 0 (lua.FEED_PUSH); the attempt's worker takes them
#   in order onto its own disk (lua.FEED_TAKE). Deleted when the attempt ends.
def feed(job: str, r: int, attempt: int) -> str:
    return f"{job_prefix(job)}feed:{r}:{attempt}"


# mrctl:<job>:fed -> hash: "<r>:<attempt>" -> items appended to that feed so far
def fed(job: str) -> str:
    return f"{job_prefix(job)}fed"


# mrctl:<job>:out:<r> -> string: msgpack list of reduce r's output pairs, sorted by key
def out(job: str, r: int) -> str:
    return f"{job_prefix(job)}out:{r}"


# mrctl:<job>:taken:<token> -> a partition or an output on its way to the master's disk
# (mrctl.master.spill), under a key of that one take (lua.TAKE_*), deleted once it is there
def taken(job: str, token: str) -> str:
    return f"{job_prefix(job)}taken:{token}"


# mrctl:<job>:stats -> hash of counters: maps_done, reduces_done, retries, refused, failures,
#   lost, timeouts, records_in, records_out, map_records_out, bytes_done, map_ms (time in map
#   code), decode_errors, bad_records (records skipped), and the job's own counters as
#   counter:<group>:<name> (increment_counter; a group has no ':'), all added by COMMIT; and
#   failed_attempts, added by FAIL
def stats(job: str) -> str:
    return f"{job_prefix(job)}stats"


COUNTER_FIELD = "counter:"


def counter_field(group: str, name: str) -> str:
    """The stats field of a user counter: counter:<group>:<name>."""
    return f"{COUNTER_FIELD}{group}:{name}"


def parse_counter_field(field: str) -> tuple[str, str] | None:
    """(group, name) of a user counter's stats field; None for the framework's own fields."""
    if not field.startswith(COUNTER_FIELD):
        return None
    group, _, name = field[len(COUNTER_FIELD):].partition(":")
    return group, name


# mrctl:<job>:bad -> hash: map tid -> JSON list of the first few records that attempt skipped
#   ([input file, line in it, error message] each); written only by a successful commit
def bad_records(job: str) -> str:
    return f"{job_prefix(job)}bad"


# mrctl:<job>:events -> stream (capped ~1000): kind, tid, attempt, worker, message
def events(job: str) -> str:
    return f"{job_prefix(job)}events"


# mrctl:<job>:attempts -> list of JSON arrays, taken (LPOP) by the master as it goes: an attempt's
#   start ["s", tid, attempt, worker, ms, backup (1: a speculative backup)] by CLAIM, and its end
#   ["e", tid, attempt, outcome, ms, worker, message, traceback] by COMMIT (committed, cancelled:
#   another attempt committed first, refused: a zombie's late commit) or FAIL and REAP (error,
#   timeout, oom, lost); the run's history is made of them
def attempt_log(job: str) -> str:
    return f"{job_prefix(job)}attempts"


# mrctl:<job>:output -> stream (capped ~10,000): worker, tid, attempt, line — what the job's
#   code printed or logged, shipped by workers after each task when the run asked for it
#   (--worker-output)
def output(job: str) -> str:
    return f"{job_prefix(job)}output"


# mrctl:<job>:progress -> list of tokens, at most WAKE_MAX: an attempt committed or failed; the
#   master blocks on it between ticks, so that it refills the window and moves on at once
def progress(job: str) -> str:
    return f"{job_prefix(job)}progress"


# mrctl:<job>:reply:<request id> -> string: "0", the answer of a COMMIT that was refused, kept
#   60 s (REPLY_TTL_MS), so that a commit sent again after its reply was lost is not counted as
#   refused twice (one per refusal: a rare event; a commit that succeeded is known by `done`)
def reply(job: str, request: str) -> str:
    return f"{job_prefix(job)}reply:{request}"


# mrctl:<job>:claimed:<worker> -> string: "<request id> <tid>@<attempt> ..." of the worker's last
#   CLAIM, kept REPLY_TTL_MS, so that a claim sent again after its reply was lost gets the same
#   attempts instead of new ones. One per worker (a worker has one claim out at a time), so
#   their memory is bounded by the workers, not by the tasks
def claimed(job: str, worker: str) -> str:
    return f"{job_prefix(job)}claimed:{worker}"


REPLY_TTL_MS = 60_000


# mrctl:<job>:done:<kind> -> string, 4 bytes (big-endian) at 4 * <index>: the attempt that
#   committed task <kind>:<index> (<kind> "m" or "r": task_ids.MAP, REDUCE), 0 while none has.
#   A committed task's hash is deleted by COMMIT: this is all that stays of it, 4 bytes a task
def done(job: str, kind: str) -> str:
    return f"{job_prefix(job)}done:{kind}"


# mrctl:<run>:late -> hash: refused -> how many commits of a step already ended and dropped were
#   refused (a zombie of step k committing during step k+1); the run's views add it to the
#   refused late commits
def late(run: str) -> str:
    return f"{job_prefix(run)}late"


def step_job(run: str, number: int) -> str:
    """The job id of step `number` of a multi-step run: <run>.s<number>."""
    return f"{run}.s{number}"


def run_of(job: str) -> str:
    """The run a job id belongs to: the run itself, or the run of a step (step_job)."""
    return job.split(".s", 1)[0]


# mrctl:<run>:live -> string: JSON of the run's latest JobSnapshot (dataclasses.asdict), set by
#   its master at the snapshot pace with a TTL of LIVE_TTL_MS (a killed master's goes away); the
#   web page (mrctl.web) pushes it to browsers. <run> is the run's id, whatever step it is in
def live(run: str) -> str:
    return f"{job_prefix(run)}live"


LIVE_TTL_MS = 15_000


# mrctl:<run>:control -> list of commands for the run's master, "cancel" | "kill" (RPUSH by the
#   web page's actions, LPOP by the master each tick), TTL CONTROL_TTL_MS so that a command sent
#   to a run that has just ended does not linger on a warm cluster
def control(run: str) -> str:
    return f"{job_prefix(run)}control"


CONTROL_TTL_MS = 60_000
CONTROL_COMMANDS = ("cancel", "kill")


# -- warm clusters (mrctl up): one cluster, many jobs in turn --------------------------------

# mrctl:lock -> string: JSON {job, name} of the run that holds a warm cluster; SET NX with a
#   TTL of LOCK_TTL_MS, renewed by its master every LOCK_TTL_MS / 3, released when it ends (a
#   killed master's lock expires on its own)
def cluster_lock() -> str:
    return f"{PREFIX}:lock"


LOCK_TTL_MS = 15_000


# mrctl:history -> list, newest first, capped at HISTORY_KEPT: JSON {job, name, state, elapsed,
#   finished (epoch s)} of each run a warm cluster ran
def history() -> str:
    return f"{PREFIX}:history"


HISTORY_KEPT = 20


def run_patterns(run: str) -> tuple[str, str]:
    """SCAN patterns of every key a run left: its own job's, and each of its steps'
    (`<run>.s<n>`, step_job)."""
    return f"{job_prefix(run)}*", f"{PREFIX}:{run}.s*:*"


# Job ids are "YYYYmmdd-HHMMSS-<hex>" (mrctl.master.driver.new_job_id): this matches every job's keys
# and none of the cluster-wide ones above.
EVERY_JOB_PATTERN = f"{PREFIX}:[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]-[0-9]*:*"
