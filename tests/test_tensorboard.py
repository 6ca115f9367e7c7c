"""TensorBoard event files: per-epoch scalars written as each epoch ends, hparams with final metrics."""

from __future__ import annotations

import os

import pytest

from phonetui import tensorboard, trainer
from phonetui.cli import main

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def _events(run_dir) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return acc


def test_each_epoch_is_in_the_event_files_as_it_ends_and_the_hparams_at_the_end(tiny, demo, tmp_path) -> None:
    seen = []

    def check(e) -> None:  # after the tee has written the epoch: TensorBoard can already read it
        if isinstance(e, trainer.EpochEnd):
            seen.append(len(_events(e_run[0].path).Scalars("val/acc")))
        elif isinstance(e, trainer.RunStarted):
            e_run.append(e.run)

    e_run: list = []
    run = trainer.train(tiny.with_training(epochs=3), demo, tmp_path, tensorboard.tee(check))
    assert seen == [1, 2, 3]
    acc = _events(run.path)
    vals = [s.value for s in acc.Scalars("val/acc")]
    assert vals == pytest.approx([m.val_acc for m in run.metrics()]) and len(acc.Scalars("lr")) == 3
    assert acc.Scalars("hparams/best_val_acc")[0].value == pytest.approx(run.status.best_val_acc)
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(acc.PluginTagToContent("hparams"))


def test_off_by_default_and_one_flag_turns_it_on(demo_dir, presets_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(tensorboard.ENV, raising=False)
    base = ["train", "--data", str(demo_dir), "--presets", str(presets_dir), "--preset", "tiny", "--epochs", "1"]
    assert main([*base, "--runs", str(tmp_path / "off")]) == 0
    assert not list((tmp_path / "off").glob("*/events.out.tfevents.*"))
    assert main([*base, "--runs", str(tmp_path / "on"), "--tensorboard"]) == 0
    assert len(list((tmp_path / "on").glob("*/events.out.tfevents.*"))) == 1
    assert tensorboard.ENV not in os.environ  # the flag is the command's setting, never the process's environment


def test_search_and_sweep_workers_get_the_flag(tmp_path) -> None:
    """--jobs workers get --tensorboard as a flag on their command line (it used to reach them as an
    environment variable that the parent set for itself)."""
    from phonetui import search, sweep
    from tests.conftest import TINY

    assert search.worker_command("tiny", "s", {"lr": "1e-3:1e-2"}, 1, "1/2", tmp_path, tmp_path,
                                 tensorboard=True)[-1] == "--tensorboard"
    queue = sweep.create(tmp_path, TINY, sweep.parse_grid({"lr": "1e-3,3e-3"}))
    assert sweep.worker_command(queue, queue.trials[0], tmp_path, tensorboard=True)[-1] == "--tensorboard"
    assert "--tensorboard" not in sweep.worker_command(queue, queue.trials[0], tmp_path)


def test_a_disk_that_fills_while_tensorboard_writes_stops_the_event_files_not_the_training(tiny, demo, tmp_path,
                                                                                           monkeypatch) -> None:
    """The event writer's file write fails as a full disk's does from the second epoch on; the run
    trains to its end, and one line names it."""
    import errno

    from tensorboard.summary.writer import record_writer

    real, writes = record_writer.RecordWriter.write, []

    def full(self, data):
        writes.append(1)
        if any(isinstance(e, trainer.EpochEnd) and e.metrics.epoch >= 2 for e in seen):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(record_writer.RecordWriter, "write", full)
    seen, said = [], []
    run = trainer.train(tiny.with_training(epochs=3), demo, tmp_path, tensorboard.tee(seen.append, said.append))
    assert run.state == "finished" and run.status.epochs_done == 3
    assert said == [f"{run.path}: TensorBoard event files stopped, the training goes on (cannot write: No space "
                    "left on device)"], said


def test_the_points_inside_each_epoch_are_step_scalars(tiny, demo, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(trainer, "POINT_EVERY_S", 0.0)  # a point after every step
    run = trainer.train(tiny.with_training(epochs=1), demo, tmp_path, tensorboard.tee(lambda e: None))
    loss = _events(run.path).Scalars("step/train_loss")
    points = run.steps()
    assert [s.step for s in loss] == [p.step for p in points]
    assert [s.value for s in loss] == pytest.approx([p.train_loss for p in points], rel=1e-5)
