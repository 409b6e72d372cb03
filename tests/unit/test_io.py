"""Atomic writes (issue #15): stale temps of killed writers are removed, nothing half-written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from prunerep.io import atomic_write_text, remove_stale_temps, write_json


def test_a_killed_writers_temp_is_removed_by_the_next_write(tmp_path: Path) -> None:
    # What SIGKILL during torch.save leaves: `_atomic`'s temp name beside the target.
    stale = tmp_path / ".model.pt.k3j9x.tmp"
    stale.write_bytes(b"\0" * 1024)
    other = tmp_path / ".other.pt.abcd.tmp"      # another file's temp: not ours to delete
    other.write_bytes(b"x")
    atomic_write_text("new", tmp_path / "model.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.pt.abcd.tmp", "model.pt"]
    assert (tmp_path / "model.pt").read_text() == "new"


def test_remove_stale_temps_only_matches_the_targets_own_temps(tmp_path: Path) -> None:
    (tmp_path / ".a.json.1.tmp").write_text("1")
    (tmp_path / ".a.json.2.tmp").write_text("2")
    (tmp_path / ".ab.json.3.tmp").write_text("3")
    (tmp_path / "a.json").write_text("{}")
    removed = remove_stale_temps(tmp_path / "a.json")
    assert sorted(p.name for p in removed) == [".a.json.1.tmp", ".a.json.2.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ab.json.3.tmp", "a.json"]
    assert remove_stale_temps(tmp_path / "missing" / "x.json") == []


def test_a_failing_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    write_json({"a": 1}, target)
    with pytest.raises(TypeError):
        write_json({"a": object()}, target)   # json cannot encode it: fails mid-write
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_written_files_are_world_readable(tmp_path: Path) -> None:
    path = atomic_write_text("x", tmp_path / "f.txt")
    assert os.stat(path).st_mode & 0o777 == 0o644


def test_file_lock_lets_one_holder_in_at_a_time(tmp_path):
    import threading
    import time

    from prunerep.io import file_lock

    events: list[str] = []
    held = threading.Event()

    def first() -> None:
        with file_lock(tmp_path / "model.pt"):
            events.append("first in")
            held.set()
            time.sleep(0.3)
            events.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    held.wait()
    with file_lock(tmp_path / "model.pt"):     # waits for the first holder
        events.append("second in")
    thread.join()
    assert events == ["first in", "first out", "second in"]
    assert (tmp_path / "model.pt.lock").exists() and not (tmp_path / "model.pt").exists()
