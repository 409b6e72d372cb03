"""The process pool: results in order, and no worker outlives a killed parent (issue #15)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from prunerep.engine.parallel import map_jobs


def _square(job: dict) -> int:
    return job["x"] ** 2


def test_map_jobs_keeps_the_order_in_process_and_lazily() -> None:
    jobs = [{"x": i} for i in range(5)]
    assert map_jobs(_square, jobs) == [0, 1, 4, 9, 16]
    assert list(map_jobs(_square, jobs, lazy=True)) == [0, 1, 4, 9, 16]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0): it has exited, only its parent has not reaped it
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def test_workers_exit_when_their_parent_is_sigkilled(tmp_path: Path) -> None:
    pid_file = tmp_path / "worker.pid"
    script = textwrap.dedent(f"""
        import os, time
        from pathlib import Path
        from prunerep.engine.parallel import map_jobs
        import tests.unit.test_parallel as me
        map_jobs(me._sleep_forever, [{{"pid_file": {str(pid_file)!r}}}] * 2, workers=2)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parents[2],
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    deadline = time.time() + 120
    while not pid_file.exists() and time.time() < deadline:
        time.sleep(0.2)
    assert pid_file.exists(), "the worker never started"
    time.sleep(0.5)
    worker = int(pid_file.read_text().split()[0])
    assert _alive(worker)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 20
    while _alive(worker) and time.time() < deadline:
        time.sleep(0.2)
    assert not _alive(worker), "a pool worker outlived its SIGKILLed parent"


def _sleep_forever(job: dict) -> None:
    with open(job["pid_file"], "a") as handle:
        handle.write(f"{os.getpid()}\n")
    while True:
        time.sleep(1)
