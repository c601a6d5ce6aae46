"""A failed test leaves no process behind: its broker, its daemon and the daemon's dashboard end.

The inner test runs in its own pytest (so its failure is not ours), with this suite's fixtures
(``-p tests.conftest``); it starts a broker through the fixture, a daemon with its dashboard, writes
their process ids down and fails before stopping anything.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.daemonutil import REPO
from tests.mqttutil import wait_until

INNER = """
import json, os
from pathlib import Path

import psutil

from tests.broker import free_port
from tests.daemonutil import start_daemon
from tests.mqttutil import wait_until


def test_that_fails_with_everything_running(broker, tmp_path):
    proc = start_daemon(
        ["--db", str(tmp_path / "b.sqlite3"), "--mqtt-host", broker.host, "--mqtt-port", str(broker.port),
         "--web-port", str(free_port()), "--speed", "1"],
        tmp_path / "d.log",
    )
    wait_until(lambda: psutil.Process(proc.pid).children(), 60, "the dashboard child")
    pids = [broker.proc.pid, proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    Path(os.environ["PIDS_FILE"]).write_text(json.dumps(pids))
    assert False, "this test fails with a broker, a daemon and a dashboard running"
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def test_a_failed_test_leaves_no_broker_daemon_or_dashboard_running(tmp_path: Path) -> None:
    inner = tmp_path / "test_inner.py"
    inner.write_text(INNER)
    pids_file = tmp_path / "pids.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEDSIDE_")} | {
        "PIDS_FILE": str(pids_file)
    }
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
         "--rootdir", str(tmp_path), "-c", os.devnull, str(inner)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 1 and "1 failed" in done.stdout, done.stdout[-3000:] + done.stderr[-2000:]
    import json

    pids = json.loads(pids_file.read_text())
    assert len(pids) >= 3, f"broker, daemon and dashboard: {pids}"
    try:
        wait_until(lambda: not any(_alive(p) for p in pids), 10, "every process of the failed test to end")
    finally:
        for pid in pids:  # whatever the outcome, leave nothing for the next test
            if _alive(pid):
                os.kill(pid, 9)
