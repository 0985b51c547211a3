"""The whole protocol in one process: a Master and burst Workers in threads, on a real redis-server.

No worker processes and no containers: the workers are `Worker(burst=True)` objects that return
once the job has ended, so a failure shows its real traceback here.
"""

from __future__ import annotations

import threading
import time

from conftest import sequential_wordcount
from jobs import WORDCOUNT, make_spec

from mrctl.broker import Broker
from mrctl.io.output import write_output
from mrctl.master.loop import Master
from mrctl.worker.loop import Worker, WorkerOptions

TEXT = (
    "It was the best of times, it was the worst of times,\r\n"
    "it was the age of wisdom, it was the age of foolishness;\n"
    "Le café était fermé — déjà. Naïve 42 snake_case\n"
)


def _inputs(tmp_path):
    paths = [tmp_path / "a.txt", tmp_path / "empty.txt", tmp_path / "b.txt"]
    paths[0].write_text(TEXT * 6, encoding="utf-8", newline="")
    paths[1].write_bytes(b"")
    paths[2].write_bytes(("word " * 60).encode() + b"\nlast line, no newline")  # a line > chunk_size
    return paths


def test_master_and_burst_workers_count_words_like_a_plain_loop(tmp_path, redis_url, broker):
    inputs = _inputs(tmp_path)
    spec = make_spec(tmp_path, WORDCOUNT, inputs, workers=2, reducers=3, chunk_size=64)
    master = Master(spec, broker, "inprocess", window=256)
    master.start()
    options = WorkerOptions(burst=True, interrupt_main=False, poll_s=0.01)
    workers = [Worker(Broker(redis_url, retries=0), name=f"w-{i}", options=options) for i in range(2)]
    exits: list[int] = []
    threads = [threading.Thread(target=lambda w=w: exits.append(w.run()), name=w.name) for w in workers]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 30
        while not master.tick():
            assert time.monotonic() < deadline, f"job stuck in phase {master.phase}: {broker.stats('inprocess')}"
            time.sleep(0.01)
        write_output(spec.output_path, master.output_pairs(), spec.output_format)
        master.finish("succeeded")  # burst workers return once the job is no longer running
        for t in threads:
            t.join(10)
        assert exits == [0, 0] and not any(t.is_alive() for t in threads)
    finally:
        master.close()  # its spill directory, as the runner does
        for w in workers:
            w.stop()
        for t in threads:
            t.join(5)
        for w in workers:
            w.broker.close()

    assert spec.output_path.read_text(encoding="utf-8") == sequential_wordcount(inputs)
    stats = broker.stats("inprocess")
    assert len(master.plan) > 10  # many small chunks, so both workers and the window are exercised
    assert stats["maps_done"] == len(master.plan) and stats["reduces_done"] == 3
    assert stats.get("retries", 0) == stats.get("refused", 0) == 0
    assert sum(w.tasks_done for w in workers) == len(master.plan) + 3  # each task committed once
