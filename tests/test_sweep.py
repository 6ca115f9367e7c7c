"""Sweeps: grid parsing and expansion, the saved queue, running what is left."""

from __future__ import annotations

import json
import os
import shutil
import threading

import pytest

from phonetui import runs, sweep, trainer
from phonetui.cli import main
from phonetui.errors import PhonetuiError
from tests.conftest import until_runs_train


def test_grid_values_are_checked_and_expanded_first_key_slowest() -> None:
    grid = sweep.parse_grid({"lr": "1e-3, 3e-4,1e-3", "batch_size": "256,512"})
    assert grid == {"lr": [1e-3, 3e-4], "batch_size": [256, 512]}
    assert sweep.expand(grid) == [{"lr": 1e-3, "batch_size": 256}, {"lr": 1e-3, "batch_size": 512},
                                  {"lr": 3e-4, "batch_size": 256}, {"lr": 3e-4, "batch_size": 512}]
    with pytest.raises(PhonetuiError, match=r"--batch-size 0: must be an integer >= 1"):
        sweep.parse_grid({"batch_size": "64,0"})
    with pytest.raises(PhonetuiError, match="'optimizer' is not a training value a sweep can vary"):
        sweep.parse_grid({"optimizer": "adam,adamw"})


def test_a_sweep_is_saved_and_continues_where_it_stopped(tiny, demo, tmp_path, capsys) -> None:
    runs_dir = tmp_path / "runs"
    s = sweep.create(runs_dir, tiny, sweep.parse_grid({"lr": "3e-3,1e-2", "epochs": "1"}))
    assert [t.values for t in sweep.load(runs_dir, s.id).trials] == [{"lr": 3e-3, "epochs": 1}, {"lr": 1e-2, "epochs": 1}]
    announced, cancel = [], threading.Event()
    stop_after_first = lambda e: cancel.set() if isinstance(e, trainer.Finished) else None  # noqa: E731
    assert not sweep.run(s, demo, stop_after_first, cancel)  # the second trial is stopped at once
    reopened = sweep.load(runs_dir, s.id)  # what another process sees: one trial finished, one is left
    assert all(t.run for t in reopened.trials) and [t.values for t in reopened.pending()] == [{"lr": 1e-2, "epochs": 1}]
    assert sweep.run(reopened, demo, announce=lambda i, n, t: announced.append((i, n, t.values["lr"])))
    assert announced == [(1, 1, 1e-2)] and not sweep.load(runs_dir, s.id).pending()
    board = sweep.leaderboard(sweep.load(runs_dir, s.id))
    accs = [run.status.best_val_acc for _, run in board]
    assert accs == sorted(accs, reverse=True) and all(run.state == "finished" for _, run in board)
    assert [s.id for s in sweep.list_sweeps(runs_dir)] == [s.id]
    from phonetui import console

    capsys.readouterr()
    console.leaderboard(sweep.load(runs_dir, s.id))
    rows = capsys.readouterr().out.splitlines()
    assert "vs best: val acc, 95%" in rows[1] and " best " in rows[2]  # the leader, then the other against it
    assert rows[3].rstrip().endswith("finished") and (" beyond noise " in rows[3] or " within noise " in rows[3])


@pytest.fixture
def queued(tiny, tmp_path):
    """A saved sweep of 2 one-epoch trials, and its runs folder."""
    runs_dir = tmp_path / "runs"
    return sweep.create(runs_dir, tiny.with_training(epochs=1), sweep.parse_grid({"lr": "3e-3,1e-2"})), runs_dir


@pytest.mark.parametrize("edit, reason", [
    (lambda d: d["trials"][0].update(values="x"), "trial 1: 'values' must be a table"),
    (lambda d: d["trials"][1].update(run=5), "trial 2: 'run' must be a run folder's name"),
    (lambda d: d["trials"][1].update(run="../../etc"), "trial 2: 'run' must be a run folder's name"),
    (lambda d: d.update(grid=[1, 2]), "'grid' must be a table of lists"),
    (lambda d: d.update(preset=5), "'preset' must be a string"),
    (lambda d: d["trials"][0]["values"].update(lr="fast"), 'trial 1: lr = "fast" is not a value'),
    (lambda d: d["base"]["training"].update(epochs=0), "base: training.epochs = 0"),
])
def test_a_damaged_queue_file_is_one_line_and_hides_no_other_sweep(queued, tiny, edit, reason, capsys):
    s, runs_dir = queued
    good = sweep.create(runs_dir, tiny, sweep.parse_grid({"batch_size": "64,128"}))
    d = json.loads(s.path.read_text())
    edit(d)
    s.path.write_text(json.dumps(d))
    assert main(["sweep", "--continue", s.id, "--runs", str(runs_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and reason in err and str(s.path) in err and "Traceback" not in err
    assert main(["sweep", "--list", "--runs", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    assert good.id in out and f"{s.path}: " in out and reason in out


def test_a_copied_queue_file_is_its_own_sweep(queued):
    s, runs_dir = queued
    copy = s.path.with_name("my-copy.json")
    shutil.copy(s.path, copy)
    loaded = sweep.load(runs_dir, "my-copy")
    assert loaded.id == "my-copy" and loaded.path == copy
    loaded.trials[0].run = "20990101-000000-x"
    loaded.save()
    assert sweep.load(runs_dir, s.id).trials[0].run is None  # the original's record is untouched


def test_a_second_process_cannot_run_the_same_sweep(queued, demo_dir, capsys):
    s, runs_dir = queued
    with sweep.hold(s):
        assert main(["sweep", "--continue", s.id, "--runs", str(runs_dir), "--data", str(demo_dir)]) == 2
    assert f"sweep {s.id}: already running in another process" in capsys.readouterr().err
    assert all(t.run is None for t in sweep.load(runs_dir, s.id).trials)


def test_a_continued_sweep_keeps_the_settings_it_started_with(queued, demo_dir, presets_dir, capsys):
    s, runs_dir = queued  # tiny's preset trains 3 epochs; the sweep was started with 1
    assert main(["sweep", "--continue", s.id, "--runs", str(runs_dir), "--data", str(demo_dir),
                 "--presets", str(presets_dir)]) == 0
    done = [runs.open_run(runs_dir / t.run) for t in sweep.load(runs_dir, s.id).trials]
    assert [r.config.training.epochs for r in done] == [1, 1] and [r.config.training.lr for r in done] == [3e-3, 1e-2]
    assert f"DEMO simulated {demo_dir}" in capsys.readouterr().out  # the data line, as train prints it
    assert main(["sweep", "--continue", s.id, "--runs", str(runs_dir), "--epochs", "5"]) == 2
    assert "continues with the settings it started with; --epochs cannot change them" in capsys.readouterr().err


def test_a_dropped_sweep_is_forgotten_and_its_runs_stay(queued, demo_dir, capsys):
    s, runs_dir = queued
    trained = sweep.load(runs_dir, s.id)
    with sweep.hold(trained):
        assert main(["sweep", "--drop", s.id, "--runs", str(runs_dir)]) == 2  # a process runs it: refused
    assert "already running in another process" in capsys.readouterr().err
    run = runs.create(runs_dir, s.base, {})
    run.release()
    assert main(["sweep", "--drop", s.id, "--runs", str(runs_dir)]) == 0
    assert f"dropped sweep {s.id} (2 of 2 runs were left; its runs stay)" in capsys.readouterr().out
    assert sweep.list_sweeps(runs_dir) == [] and run.path.is_dir()
    assert main(["sweep", "--drop", s.id, "--runs", str(runs_dir)]) == 2
    assert "no such sweep" in capsys.readouterr().err


@pytest.mark.slow
def test_jobs_train_the_trials_in_worker_processes_each_with_its_share(demo_dir, presets_dir, tmp_path) -> None:
    import subprocess
    import sys

    runs_dir = tmp_path / "runs"
    cmd = [sys.executable, "-m", "phonetui", "sweep", "--data", str(demo_dir), "--presets", str(presets_dir),
           "--preset", "tiny", "--lr", "1e-3,3e-3,1e-2", "--epochs", "1", "--jobs", "2", "--runs", str(runs_dir)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "Traceback" not in r.stderr + r.stdout, r.stderr
    assert "3 trials, 3 to run, 2 at a time" in r.stdout
    assert all(f"[trial {n}] [001/001] Train Acc: " in r.stdout for n in (1, 2, 3)), r.stdout
    (s,) = sweep.list_sweeps(runs_dir)
    assert not s.pending() and len({t.run for t in s.trials}) == 3  # each worker recorded its own trial's run
    finished = [runs.open_run(runs_dir / t.run) for t in s.trials]
    assert [r.config.training.lr for r in finished] == [1e-3, 3e-3, 1e-2]
    assert all(r.record["threads"] <= max(1, len(os.sched_getaffinity(0)) // 2) for r in finished)  # a share each
    assert "leaderboard" in r.stdout


@pytest.mark.slow
def test_a_stopped_jobs_sweep_leaves_its_trials_to_continue(demo_dir, presets_dir, tmp_path) -> None:
    import signal
    import subprocess
    import sys

    runs_dir = tmp_path / "runs"
    cmd = [sys.executable, "-m", "phonetui", "sweep", "--data", str(demo_dir), "--presets", str(presets_dir),
           "--preset", "tiny", "--lr", "1e-3,3e-3,1e-2", "--epochs", "500", "--jobs", "2", "--runs", str(runs_dir)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    until_runs_train(runs_dir, 2, 120)
    proc.send_signal(signal.SIGINT)  # to phonetui alone: it passes the stop on to its workers
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err + out, err
    (s,) = sweep.list_sweeps(runs_dir)
    assert f"`phonetui sweep --continue {s.id}` runs what is left" in out
    assert {runs.open_run(runs_dir / t.run).state for t in s.trials if t.run} == {"stopped"}
    assert len(s.pending()) == 3 and sum(t.run is not None for t in s.trials) == 2  # the third never started
