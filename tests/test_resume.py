"""Early stopping and resume: patience ends a run as finished; a stopped or killed run continues
from its last epoch and ends where an uninterrupted run with the same seed ends."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from phonetui import runs, trainer
from phonetui.cli import main
from phonetui.errors import PhonetuiError


def _numbers(run: runs.Run) -> list[tuple]:
    return [(m.epoch, m.train_acc, m.train_loss, m.val_acc, m.val_loss, m.lr) for m in run.metrics()]


def test_patience_stops_a_run_that_no_longer_improves(tiny, demo, tmp_path) -> None:
    cfg = tiny.with_training(epochs=50, lr=0.3, patience=2)  # a large lr: val acc stalls within a few epochs
    run = trainer.train(cfg, demo, tmp_path)
    done = run.status.epochs_done
    assert run.state == "finished" and done < 50 and done - run.status.best_epoch == 2
    assert run.status.message == f"stopped early after epoch {done}: no val acc gain in 2 epochs"


def test_a_stopped_run_resumes_to_the_same_metrics(tiny, demo, tmp_path) -> None:
    cfg = dataclasses.replace(tiny, model=dataclasses.replace(tiny.model, dropout=0.2)).with_training(epochs=4,
                                                                                                  threads="2")
    whole = trainer.train(cfg, demo, tmp_path / "a")  # a fixed thread count: auto's follows the load, and the bits with it
    cancel = threading.Event()
    stop_in_epoch_3 = lambda e: cancel.set() if isinstance(e, trainer.EpochEnd) and e.metrics.epoch == 2 else None  # noqa: E731
    cut = trainer.train(cfg, demo, tmp_path / "b", stop_in_epoch_3, cancel)
    assert cut.state == "stopped" and cut.status.epochs_done == 2
    events = []
    resumed = trainer.resume(runs.open_run(cut.path), demo, events.append)
    assert resumed.state == "finished" and resumed.status.message == "resumed after epoch 2"
    assert _numbers(resumed) == _numbers(whole)
    ends = [(e.metrics.epoch, e.earlier) for e in events if isinstance(e, trainer.EpochEnd)]
    assert ends == [(1, True), (2, True), (3, False), (4, False)]  # the first two replayed from the record
    with pytest.raises(PhonetuiError, match="finished, nothing to resume"):
        trainer.resume(resumed, demo)


def test_a_cosine_run_records_the_lr_each_epoch_trained_with(tiny, demo, tmp_path) -> None:
    run = trainer.train(tiny.with_training(epochs=2, schedule="cosine", lr=1e-3), demo, tmp_path)
    first, last = (m.lr for m in run.metrics())
    assert first == 1e-3 and 0.4e-3 < last < 0.6e-3  # its last epoch starts half way down, not at 0
    assert trainer.train(tiny.with_training(epochs=50, lr=0.3, patience=1), demo, tmp_path).status.message.endswith(
        "no val acc gain in 1 epoch")


@pytest.mark.slow
def test_a_killed_cli_run_resumes_from_the_cli(demo_dir, presets_dir, tmp_path, capsys) -> None:
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "phonetui", "train", "--data", str(demo_dir), "--presets", str(presets_dir),
           "--preset", "tiny", "--epochs", "400", "--runs", str(tmp_path / "runs")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not list((tmp_path / "runs").glob(f"*/{runs.LAST}")) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    (path,) = (tmp_path / "runs").iterdir()
    run = runs.open_run(path)
    assert run.state == "interrupted"
    done = run.status.epochs_done
    config = (path / runs.CONFIG).read_text().replace("epochs = 400", f"epochs = {done + 2}")  # a short rest
    (path / runs.CONFIG).write_text(config)
    capsys.readouterr()
    assert main(["resume", str(path)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "Train Acc" in line]
    assert len(lines) == done + 2 and all(line.endswith(", trained before the resume)") for line in lines[:done])
    assert not lines[-1].endswith("resume)")
    run = runs.open_run(path)
    assert run.state == "finished" and run.status.epochs_done == done + 2 and len(run.metrics()) == done + 2
