"""The web page's channel to a run (keys.live, keys.control, broker/live.py) against a real
Redis, and what `mrctl ui` refuses before it serves anything."""

from __future__ import annotations

import fnmatch
import subprocess
import sys

import pytest
from conftest import ROOT

from mrctl.broker import keys

RUN = "20261129-120000-ab12"


def test_the_live_keys_are_pinned_and_go_with_the_run():
    assert keys.live(RUN) == f"mrctl:{RUN}:live"
    assert keys.control(RUN) == f"mrctl:{RUN}:control"
    for key in (keys.live(RUN), keys.control(RUN)):  # a warm cluster drops them with the run's others
        assert fnmatch.fnmatchcase(key, keys.run_patterns(RUN)[0])
        assert fnmatch.fnmatchcase(key, keys.EVERY_JOB_PATTERN)


def test_commands_are_taken_once_oldest_first_and_expire(broker):
    broker.send_control(RUN, "kill")
    broker.send_control(RUN, "cancel")
    assert 0 < broker.r.pttl(keys.control(RUN)) <= keys.CONTROL_TTL_MS
    assert broker.take_control(RUN) == ["kill", "cancel"]
    assert broker.take_control(RUN) == []
    with pytest.raises(ValueError):
        broker.send_control(RUN, "rm")


def test_the_live_snapshot_is_replaced_and_expires(broker):
    assert broker.live(RUN) is None
    broker.publish_live(RUN, '{"phase": "map"}')
    broker.publish_live(RUN, '{"phase": "reduce"}')
    assert broker.live(RUN) == '{"phase": "reduce"}'
    assert 0 < broker.r.pttl(keys.live(RUN)) <= keys.LIVE_TTL_MS


@pytest.mark.slow
@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7", "example.org"])
def test_mrctl_ui_serves_on_loopback_only(host):
    done = subprocess.run([sys.executable, "-m", "mrctl", "ui", "--host", host, "--port", "0"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "loopback" in done.stderr, done
