"""The run store: typed status, one writer, liveness from the lock, damaged runs listed, atomic files."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest

from phonetui import fileio, runs
from phonetui.errors import PhonetuiError


def test_not_a_run(tmp_path):
    with pytest.raises(PhonetuiError, match="not a run folder"):
        runs.open_run(tmp_path)
    with pytest.raises(PhonetuiError, match="not found"):
        runs.open_run(tmp_path / "missing")


def test_liveness_comes_from_the_lock_not_the_pid(tiny, tmp_path):
    a = runs.create(tmp_path, tiny, {"started": "x"})
    b = runs.create(tmp_path, tiny, {"started": "y"})
    (tmp_path / "notes").mkdir()
    assert a.path != b.path and a.state == "running"
    assert runs.open_run(a.path).state == "running"  # a reader in the same process sees the writer's lock
    a.release()  # the process is gone; its pid (this one) is alive, so a pid check would say running
    listed = runs.list_runs(tmp_path)
    assert [r.id for r in listed] == sorted([a.id, b.id], reverse=True)
    assert {r.id: r.state for r in listed} == {a.id: "interrupted", b.id: "running"}
    (b.path / runs.LOCK).unlink()
    assert runs.open_run(b.path).state == "interrupted"


def test_only_the_training_process_writes_status_and_predictions_never_touch_it(tiny, tmp_path):
    writer = runs.create(tmp_path, tiny, {})
    reader = runs.open_run(writer.path)  # e.g. `phonetui predict RUN` while the run trains
    with pytest.raises(RuntimeError, match="only the training process"):
        reader.write_status(status="stopped")
    writer.write_status(epochs_done=7, best_epoch=6, best_val_acc=0.5)
    runs.record_prediction(reader, tmp_path / "p.csv", 0.25)
    writer.write_status(status="finished")
    writer.release()
    back = runs.open_run(writer.path)
    assert back.state == "finished" and back.status.epochs_done == 7 and back.status.best_epoch == 6
    assert back.prediction.test_acc == 0.25 and back.prediction.path == str((tmp_path / "p.csv").resolve())


def _damage(run, what):
    status, config = run.path / runs.STATUS, run.path / runs.CONFIG
    if what == "no config":
        config.unlink()
    elif what == "config not toml":
        config.write_text("[[[")
    elif what == "config not utf-8":
        config.write_bytes(b"name = '\xff'\n")
    elif what == "status a folder":
        status.unlink()
        status.mkdir()
    elif what == "status fifo":
        status.unlink()
        os.mkfifo(status)
    elif what == "bad prediction record":
        (run.path / runs.PREDICTION_RECORD).write_text('{"path": 3}')
    else:
        status.write_text(what)


@pytest.mark.parametrize("what, reason", [
    ("[]", "status.json: expected a JSON object, got list"),
    ('{"status": "running", "pid": "12"}', "'pid' = \"12\" has the wrong type"),
    ('{"status": "finished", "epochs_done": true}', "'epochs_done' = true has the wrong type"),
    ('{"status": "finished", "best_val_acc": "0.5"}', "'best_val_acc'"),
    ('{"status": "done"}', "unknown status 'done'"),
    ('{"pid": 3}', "no 'status'"),
    ("{oops", "status.json: not valid JSON"),
    ("", "status.json: not valid JSON"),
    ("no config", "config.toml: missing file"),
    ("config not toml", "config.toml: not valid TOML"),
    ("config not utf-8", "config.toml: not UTF-8 text (byte 0xff"),
    ("status a folder", "status.json: not a regular file"),
    ("status fifo", "status.json: not a regular file"),
    ("bad prediction record", "prediction.json: 'path' = 3 has the wrong type"),
])
def test_a_damaged_run_is_listed_with_its_reason_beside_the_good_ones(tiny, tmp_path, what, reason):
    good, bad = runs.create(tmp_path, tiny, {}), runs.create(tmp_path, tiny, {})
    good.release(), bad.release()
    _damage(bad, what)
    listed = {r.id: r for r in runs.list_runs(tmp_path)}
    assert isinstance(listed[good.id], runs.Run) and listed[bad.id].state == "damaged"
    assert reason in listed[bad.id].reason and "\n" not in listed[bad.id].reason
    with pytest.raises(PhonetuiError, match="^" + str(bad.path)):
        runs.open_run(bad.path)


def test_a_full_disk_leaves_no_run_folder(tiny, tmp_path, monkeypatch):
    def full(path, text):
        raise PhonetuiError(f"{path}: cannot write (No space left on device)")

    monkeypatch.setattr(runs, "write_text", full)
    with pytest.raises(PhonetuiError, match="config.toml: cannot write .No space left on device."):
        runs.create(tmp_path / "runs", tiny, {})
    assert list((tmp_path / "runs").iterdir()) == []


def test_a_runs_folder_that_is_a_file_is_one_line(tiny, tmp_path):
    (tmp_path / "runs").write_text("x")
    with pytest.raises(PhonetuiError, match="runs: cannot make a run folder"):
        runs.create(tmp_path / "runs", tiny, {})


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "status.json"
    target.write_text(json.dumps({"ok": 1}))

    def broken(tmp):
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(PhonetuiError, match=f"^{target}: cannot write .No space left on device.$"):
        fileio.atomic_write(target, broken)
    assert json.loads(target.read_text()) == {"ok": 1} and list(tmp_path.iterdir()) == [target]


@pytest.mark.slow
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_honour_the_umask(tmp_path, umask, mode):
    code = "import sys, pathlib, phonetui.fileio as f; f.write_text(pathlib.Path(sys.argv[1]), 'x')"
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "f")], capture_output=True, text=True,
                       preexec_fn=lambda: os.umask(umask))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "f").stat().st_mode & 0o777 == mode


def test_resuming_takes_the_lock_and_is_refused_while_another_holds_it(tiny, tmp_path):
    writer = runs.create(tmp_path, tiny, {})
    with pytest.raises(PhonetuiError, match="still training"):
        runs.open_run(writer.path).acquire()
    writer.write_status(status="stopped", epochs_done=2)
    writer.release()
    (writer.path / runs.LOCK).unlink()  # a run from before run.lock existed
    again = runs.open_run(writer.path)
    again.acquire()
    assert again.state == "stopped" and again.status.epochs_done == 2 and runs.open_run(writer.path).state == "stopped"
    again.write_status(status="running")
    assert runs.open_run(writer.path).state == "running"
    again.release()
    assert runs.open_run(writer.path).state == "interrupted"


def test_a_misspelt_status_field_is_refused_not_written(tiny, tmp_path):
    run = runs.create(tmp_path, tiny, {})
    try:
        with pytest.raises(TypeError, match="RunStatus has no field epoch_done"):
            run.write_status(epoch_done=3)
        assert "epoch_done" not in (run.path / runs.STATUS).read_text()
    finally:
        run.release()
