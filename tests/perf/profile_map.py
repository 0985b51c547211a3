"""Where a map task's time goes: cProfile of mrctl's map path (FastWordMapper + combiner,
partitioning, msgpack) over one 8 MiB chunk of the corpus, three times.

    python -m tests.perf.profile_map
"""

import cProfile
import io
import pstats
import sys

from mrctl.worker import tasks
from tests.perf.bench import CORPUS, ROOT

sys.path.insert(0, str(ROOT / "jobspecs"))
import wordcount as wc  # noqa: E402

books = b"".join(p.read_bytes() for p in sorted(CORPUS.glob("*.txt")))
chunk = (books * 3)[: 8 << 20]
chunk = chunk[: chunk.rindex(b"\n") + 1]
pr = cProfile.Profile()
pr.enable()
for _ in range(3):
    tasks.run_map(wc.FastWordMapper(), wc.SumReducer(), chunk, 4, "replace")
pr.disable()
s = io.StringIO()
pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(8)
print(s.getvalue())
