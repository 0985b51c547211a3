"""The job's settings in Redis: one typed JobMeta, its wire encoding pinned here."""

import dataclasses

import pytest

from mrctl.broker.meta import JobMeta, meta_fields


def test_the_hash_holds_each_field_as_a_string_and_reads_back_the_same():
    meta = JobMeta(name="wordcount", run="20261207-000000-ab12", state="running", created=1.5, module="wc.py",
                   mapper="M", reducers=4, task_timeout=30.0, bad_records_max=None, sort_values=True,
                   params={"top": 10, "words": ["a"]}, step=2, steps=3, previous_counters=(("g", "n", 7),))
    raw = meta.to_redis()
    assert set(raw) == {f.name for f in dataclasses.fields(JobMeta)}
    assert (raw["reducers"], raw["task_timeout"], raw["sort_values"], raw["speculative"]) == ("4", "30.0", "1", "0")
    assert (raw["bad_records_max"], raw["params"], raw["previous_counters"]) == (
        "", '{"top": 10, "words": ["a"]}', '[["g", "n", 7]]')
    assert JobMeta.from_redis(raw) == meta


def test_a_missing_field_takes_the_one_default_and_an_unknown_one_is_ignored():
    meta = JobMeta.from_redis({"state": "failed", "failed_task": "m:3", "from_a_newer_master": "x"})
    assert (meta.state, meta.failed_task, meta.max_attempts, meta.task_timeout, meta.params) == (
        "failed", "m:3", 4, 300.0, {})
    assert JobMeta.from_redis({"bad_records_max": "5", "lease_s": ""}).bad_records_max == 5


def test_an_update_names_only_fields_that_exist():
    assert meta_fields(state="failed", phase="done") == {"state": "failed", "phase": "done"}
    with pytest.raises(ValueError, match="no field 'stat'"):
        meta_fields(stat="failed")


def test_a_published_job_reads_back_through_the_broker(broker):
    broker.publish_job("J", JobMeta(state="running", reducers=2, worker_output=True), {"m.py": ""})
    broker.set_meta("J", phase="reduce")
    meta = broker.meta("J")
    assert (meta.state, meta.phase, meta.reducers, meta.worker_output) == ("running", "reduce", 2, True)
    assert broker.meta("never-published") is None
