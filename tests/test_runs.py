"""The run store: folders that are not runs, interrupted runs, listing."""

from __future__ import annotations

import json

import pytest

from phonetui import runs
from phonetui.errors import PhonetuiError


def test_not_a_run(tmp_path):
    with pytest.raises(PhonetuiError, match="not a run folder"):
        runs.open_run(tmp_path)
    with pytest.raises(PhonetuiError, match="not found"):
        runs.open_run(tmp_path / "missing")


def test_listing_skips_strangers_and_marks_dead_runs(tiny, tmp_path):
    a = runs.create(tmp_path, tiny, {"started": "x"})
    b = runs.create(tmp_path, tiny, {"started": "y"})
    (tmp_path / "notes").mkdir()
    assert a.path != b.path and a.state == "running"
    a.update_status(pid=2**22 + 12345)  # no such process
    listed = runs.list_runs(tmp_path)
    assert [r.id for r in listed] == sorted([a.id, b.id], reverse=True)
    assert {r.id: r.state for r in listed}[a.id] == "interrupted"


def test_damaged_record_is_one_line(tiny, tmp_path):
    run = runs.create(tmp_path, tiny, {})
    (run.path / runs.STATUS).write_text("{oops")
    with pytest.raises(PhonetuiError, match="damaged run record"):
        runs.open_run(run.path)


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "status.json"
    target.write_text(json.dumps({"ok": 1}))

    def broken(tmp):
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        runs.atomic_write(target, broken)
    assert json.loads(target.read_text()) == {"ok": 1} and list(tmp_path.iterdir()) == [target]
