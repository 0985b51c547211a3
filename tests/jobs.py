"""Job modules used by the tests, written into each test's tmp_path as source text.

Instrumentation (execution markers) goes to a directory the test owns: fine for the local
backend, whose workers share this filesystem. The jobs themselves are ordinary mrctl jobs.
"""

from __future__ import annotations

from pathlib import Path

from mrctl.spec.jobspec import JobSpec, WorkerLimits

WORDCOUNT = '''
import re
from mrctl import Mapper, Reducer

WORD = re.compile(r"[^\\W\\d_]+")


class WordMapper(Mapper):
    def map(self, line):
        for word in WORD.findall(line):
            yield word.lower(), 1


class SumReducer(Reducer):
    def reduce(self, key, values):
        return sum(values)
'''

# For job code that talks to the job's Redis itself (test instrumentation): local workers get
# the URL in their environment, container workers in a file (so that no `docker inspect` shows
# the password). No braces: it goes into sources that are .format()ted.
REDIS_URL = """
import os as _os


def redis_url():
    path = _os.environ.get("MRCTL_REDIS_URL_FILE")
    if path:
        with open(path) as f:
            return f.read().strip()
    return _os.environ.get("MRCTL_REDIS_URL")
"""

# Slow tasks, so that a test can kill a worker while it maps or reduces.
SLOW = WORDCOUNT + '''
import time


class SlowMapper(WordMapper):
    def setup(self):
        time.sleep(0.4)


class SlowReducer(SumReducer):
    def setup(self):
        time.sleep(1.0)
'''

# Raises on one line of one file; records each attempt in MARKERS.
RAISES = WORDCOUNT + '''
import os
MARKERS = {markers!r}


class FaultyMapper(WordMapper):
    def map(self, line):
        if "{needle}" in line:
            with open(os.path.join(MARKERS, "attempts"), "a") as f:
                f.write("x\\n")
            return 1 / 0
        yield from super().map(line)
'''

# Hangs on the first attempt of the task that sees NEEDLE, then behaves.
HANGS = WORDCOUNT + '''
import os, time
MARKERS = {markers!r}


def stubborn():
    """Ignores the TaskTimeout interruption, so the worker must be replaced."""
    while True:
        try:
            time.sleep(3600)
        except BaseException:
            pass


class HangingMapper(WordMapper):
    def map(self, line):
        if "{needle}" in line:
            marker = os.path.join(MARKERS, "hung")
            if not os.path.exists(marker):
                open(marker, "w").close()
                {hang}
        yield from super().map(line)
'''
HANG_SLEEP = "time.sleep(3600)"
HANG_STUBBORN = "stubborn()"


# Cuts every Redis client's connection once (CLIENT KILL), from inside a map task, then keeps
# working; every map task records "<pid> <time>" so a test can see who worked afterwards.
BLIP = WORDCOUNT + REDIS_URL + '''
import os, time
import redis
MARKERS = {markers!r}


class BlipMapper(WordMapper):
    def setup(self):
        time.sleep(0.2)
        with open(os.path.join(MARKERS, "tasks"), "a") as f:
            f.write(f"{{os.getpid()}} {{time.time()}}\\n")

    def map(self, line):
        if "{needle}" in line and not os.path.exists(os.path.join(MARKERS, "blip")):
            at = time.time()
            cut = redis.Redis.from_url(redis_url()).client_kill_filter(_type="normal")
            with open(os.path.join(MARKERS, "blip"), "w") as f:
                f.write(f"{{at}} {{cut}}")
        yield from super().map(line)
'''


# A straggler: the first execution of the task that sees NEEDLE sleeps 30 s (well below
# task_timeout), later ones do not. "First" is decided in Redis, so it works in containers.
STRAGGLER = WORDCOUNT + REDIS_URL + '''
import os, time
import redis


class StragglingMapper(WordMapper):
    def map(self, line):
        if "{needle}" in line:
            r = redis.Redis.from_url(redis_url())
            if r.setnx("test:straggled", os.environ.get("MRCTL_WORKER_NAME", "?")):
                time.sleep(30)
        yield from super().map(line)


class SlowSumReducer(SumReducer):
    def setup(self):
        time.sleep(1.0)
'''


def make_spec(tmp: Path, source: str, inputs: list[Path], *, mapper: str = "WordMapper",
              reducer: str = "SumReducer", combiner: str | None = "SumReducer",
              output: str = "out.json", **settings) -> JobSpec:
    module = tmp / "job.py"
    module.write_text(source)
    return JobSpec(
        name="test", spec_path=tmp / "job.yaml", inputs=tuple(inputs), module=module,
        mapper=mapper, reducer=reducer, combiner=combiner, output_path=tmp / output,
        output_format=output.rsplit(".", 1)[1],
        **{"backend": "local", "limits": WorkerLimits(), **settings},
    )

# The MIT 6.824 crash test, as an mrctl job: each map/reduce task, at random, exits its worker
# process (a third of the time), sleeps 0-10 s (a third), or proceeds. Every execution of a
# task's code is counted in Redis (the test's own key), through the worker's own connection.
CRASHY = WORDCOUNT + REDIS_URL + '''
import os, random, time, zlib
import redis

SEED = {seed}
_rng = random.Random()


def _count(kind, key):
    url = redis_url()
    if url:
        redis.Redis.from_url(url).hincrby("test:executions", kind + ":" + key, 1)


def _maybe_crash(key):
    _rng.seed(f"{{SEED}}-{{key}}-{{os.getpid()}}-{{time.time_ns()}}")
    roll = _rng.random()
    if roll < 1 / 3:
        os._exit(1)
    if roll < 2 / 3:
        time.sleep(_rng.uniform(0, 10))


def _crash_point(text):
    """A map task's execution is counted, and may crash or sleep, keyed by its chunk."""
    key = str(zlib.crc32(text[:200].encode()))
    _count("map", key)
    if {crash}:
        _maybe_crash(key)


class CrashyMapper(WordMapper):
    def map_chunk(self, text):
        _crash_point(text)
        for line in text.split("\\n"):
            yield from self.map(line)


class CrashyReducer(SumReducer):
    def setup(self):
        if {crash}:
            _maybe_crash("reduce")
'''

# The crash test's two-step variant: step 2 groups step 1's words by count, crashing as often.
CRASHY_STEPS = CRASHY + '''


class CrashyByCount(Mapper):
    def setup(self):
        _count("by_count", self.task_id)
        if {crash}:
            _maybe_crash("by_count-" + self.task_id)

    def map(self, word, n):
        yield n, word


class CrashySortedWords(Reducer):
    def setup(self):
        if {crash}:
            _maybe_crash("sorted")

    def reduce(self, n, words):
        yield n, sorted(words)
'''

# The crash test's shuffle-heavy variant: every line crosses the shuffle (keyed by its first
# word), so that a 16 MiB Redis must spill while workers crash and sleep.
CRASHY_SHUFFLE = CRASHY + '''


class CrashyFirstWord(Mapper):
    def map_chunk(self, text):
        _crash_point(text)
        for line in text.split("\\n"):
            if line.split():
                yield line.split()[0].lower(), line


class CrashySortedLines(Reducer):
    def setup(self):
        if {crash}:
            _maybe_crash("reduce")

    def reduce(self, word, lines):
        return sorted(lines)
'''

# Allocates far more memory than its container may use.
GREEDY = WORDCOUNT + '''
class GreedyMapper(WordMapper):
    def setup(self):
        self.hog = [bytearray(1 << 20) for _ in range(2048)]  # 2 GiB
'''


# Later steps of a multi-step job: they read the previous step's (key, value) pairs.
STEPS = WORDCOUNT + REDIS_URL + '''
import os, time
import redis
from mrctl import Mapper, Reducer


class ByCount(Mapper):
    """(word, n) -> (n, word): which words occur how often."""

    def map(self, word, n):
        yield n, word


class SortedWords(Reducer):
    def reduce(self, n, words):
        yield n, sorted(words)


class FlakyByCount(ByCount):
    """The first attempt of m:0 raises: a retry in a later step."""

    def setup(self):
        if self.task_id == "m:0" and self.attempt == 1:
            raise RuntimeError("flaky first attempt of a later step")


class StragglingByCount(ByCount):
    """The first execution of m:1 sleeps 30 s (decided in Redis): a backup's job."""

    def setup(self):
        if self.task_id == "m:1" and redis.Redis.from_url(redis_url()).setnx("test:straggled", "1"):
            time.sleep(30)


class SlowByCount(ByCount):
    def setup(self):
        time.sleep(0.5)


class SlowWordMapper(WordMapper):
    def setup(self):
        time.sleep(0.3)


class Halve(Mapper):
    """One iteration: every count halved; counts the ones still at least params["limit"]."""

    def map(self, word, n):
        n //= 2
        self.increment_counter("halve", "big", int(n >= self.params["limit"]))
        yield word, n


class Context(Reducer):
    """Reports what a task knew of its step: step, name, iteration, counters before it."""

    def reduce(self, key, values):
        yield key, [self.step, self.step_name, self.iteration, sorted(self.previous_counters.items()),
                    sorted(self.job_counters.items()), sum(values)]
'''


def write_crash_spec(tmp: Path, seed: int, inputs: list[Path], backend: str, name: str = "crash-test") -> Path:
    """The crash test's spec (CRASHY with `seed`, 4 workers, 3 reducers, 1 MiB chunks) and job
    module in `tmp`, as tests/test_faults.py and tests/test_swarm.py run it through the CLI."""
    import json

    (tmp / "crashy.py").write_text(CRASHY.format(seed=seed, crash=True))
    spec = tmp / "crash.yaml"
    spec.write_text(
        f"name: {name}\ninput: {json.dumps([str(p) for p in inputs])}\n"
        "job: {module: crashy.py, mapper: CrashyMapper, reducer: CrashyReducer, combiner: SumReducer}\n"
        f"workers: 4\nreducers: 3\nchunk_size: 1MiB\nbackend: {backend}\n")
    return spec


def write_steps_spec(tmp: Path, body: str, inputs: list[Path], name: str = "steps",
                     source: str = STEPS, output: str = "out.json") -> Path:
    """A `steps:` spec (YAML `body`) over `inputs`, its module job.py beside it."""
    (tmp / "job.py").write_text(source)
    spec = tmp / f"{name}.yaml"
    quoted = ", ".join(f'"{p}"' for p in inputs)
    spec.write_text(f"name: {name}\ninput: [{quoted}]\nmodule: job.py\noutput: {output}\n{body}")
    return spec


# Later steps whose output depends on the order pairs and values arrive in: the same on every
# backend for the same R (inline runs the tasks a distributed run would).
ORDERED = STEPS + '''


class FirstSeen(Reducer):
    """The first value of each key, as it arrives: depends on the order of map tasks."""

    def reduce(self, key, values):
        return values[0]


class Tag(Mapper):
    """Map-only: (n, word) -> (word, n), in the order the previous step's outputs come."""

    def map(self, n, word):
        yield word, n


class PickyByCount(ByCount):
    """Raises on (skips, under bad_records: skip) every word of count params["bad"]."""

    def map(self, word, n):
        if n == self.params["bad"]:
            raise ValueError(f"{word} occurs {n} times")
        yield n, word
'''


# Holds a job in its map phase until the test sets test:release in the job's Redis.
GATED = WORDCOUNT + REDIS_URL + """
import time
import redis


class GatedMapper(WordMapper):
    def setup(self):  # holds the job in its map phase until the test sets test:release
        r = redis.Redis.from_url(redis_url())
        deadline = time.time() + 300
        while not r.exists("test:release") and time.time() < deadline:
            time.sleep(0.2)
"""


# Paced for watching: each map task takes half a second, so that a page sees progress move and
# a test has time to act; counts its words in a counter of its own.
PACED = WORDCOUNT + """
import time


class PacedMapper(WordMapper):
    def setup(self):
        time.sleep(0.5)

    def map(self, line):
        for word, one in super().map(line):
            self.increment_counter("words", "seen")
            yield word, one
"""


def write_paced_spec(tmp: Path, name: str, backend: str, lines: int = 6000, mapper: str = "PacedMapper",
                     workers: int = 2) -> Path:
    """A spec of the PACED job over `lines` generated lines in 1 KiB chunks (about 22 lines a
    map task): 6,000 lines make some 130 tasks, a minute of work for two workers."""
    (tmp / "job.py").write_text(PACED)
    (tmp / "input.txt").write_text("".join(f"word{i % 97} and line {i}\n" for i in range(lines)))
    spec = tmp / f"{name}.yaml"
    spec.write_text(f"name: {name}\ninput: input.txt\n"
                    f"job: {{module: job.py, mapper: {mapper}, reducer: SumReducer, combiner: SumReducer}}\n"
                    f"workers: {workers}\nreducers: 2\nchunk_size: 1KiB\nbackend: {backend}\noutput: out.json\n")
    return spec
