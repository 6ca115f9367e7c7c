"""Inside the epoch: the running train loss and accuracy as the epoch goes, step points kept in
steps.csv (History and TensorBoard read them), a resumed run's cut epoch dropped, and the CLI's
progress line where stdout is a file."""

from __future__ import annotations

import threading

import pytest

from phonetui import console, runs, trainer
from phonetui.cli import main
from phonetui.errors import PhonetuiError
from phonetui.events import Progress, WithinEpoch


@pytest.fixture
def every_step(monkeypatch):
    monkeypatch.setattr(trainer, "POINT_EVERY_S", 0.0)  # a point after every step: the demo epochs are short
    monkeypatch.setattr(trainer, "PROGRESS_EVERY_S", 0.0)


def test_points_partition_each_epoch_and_are_kept_in_the_run(tiny, demo, tmp_path, every_step) -> None:
    events = []
    run = trainer.train(tiny.with_training(epochs=2), demo, tmp_path, events.append)
    points = [e.point for e in events if isinstance(e, WithinEpoch)]
    assert points and [p.row() for p in run.steps()] == [p.row() for p in points]  # what the listeners heard
    n_train = run.info.train_rows
    for m in run.metrics():
        inside = [p for p in points if p.epoch == m.epoch]
        ats = [m.epoch - 1] + [p.at for p in inside]
        frames = [(b - a) * n_train for a, b in zip(ats, ats[1:])]
        # the points' windows cover the epoch: their frame-weighted means are the epoch's
        assert sum(f * p.train_loss for f, p in zip(frames, inside)) / sum(frames) == pytest.approx(m.train_loss, rel=1e-3)
        assert sum(f * p.train_acc for f, p in zip(frames, inside)) / sum(frames) == pytest.approx(m.train_acc, rel=1e-3)
        assert inside[-1].at == pytest.approx(m.epoch)
    assert [p.step for p in points] == sorted(p.step for p in points) and all(p.lr == tiny.training.lr for p in points)
    running = [e for e in events if isinstance(e, Progress) and e.train_loss is not None]
    assert running and all(0 < e.train_acc <= 1 for e in running)
    assert "loss" in running[-1].line() and "epoch ends in" in running[-1].line()


def test_a_resumed_run_drops_the_points_of_its_cut_epoch(tiny, demo, tmp_path, every_step) -> None:
    cancel, seen = threading.Event(), []

    def stop_inside_epoch_2(e) -> None:
        if isinstance(e, WithinEpoch) and e.point.epoch == 2:
            seen.append(e.point)
            if len(seen) == 3:
                cancel.set()

    cut = trainer.train(tiny.with_training(epochs=2), demo, tmp_path, stop_inside_epoch_2, cancel)
    assert cut.state == "stopped" and [p.epoch for p in cut.steps()].count(2) == 3
    resumed = trainer.resume(runs.open_run(cut.path), demo)
    epoch_2 = [p for p in resumed.steps() if p.epoch == 2]
    assert resumed.state == "finished" and epoch_2[0].at < seen[0].at + 1e-9 and epoch_2[-1].at == pytest.approx(2)
    assert [p.at for p in resumed.steps()] == sorted(p.at for p in resumed.steps())  # no cut points left in between


def test_a_damaged_steps_file_is_named_and_a_line_cut_short_is_left_out(tiny, demo, tmp_path, every_step) -> None:
    run = trainer.train(tiny.with_training(epochs=1), demo, tmp_path)
    path = run.path / runs.STEPS
    whole = path.read_text()
    path.write_text(whole + "1,0.99,12")  # a killed process's last, unfinished line
    assert run.steps() == runs.open_run(run.path).steps() and len(run.steps()) == whole.count("\n") - 1
    path.write_text(whole.replace(",", ";", 8))
    with pytest.raises(PhonetuiError, match="steps.csv: not a steps file"):
        run.steps()
    lines = whole.split("\n")
    path.write_text("\n".join([lines[0], "1,x,2,3,4,5"] + lines[1:]))
    with pytest.raises(PhonetuiError, match=r"steps.csv: line 2 is not a step point"):
        run.steps()


def test_the_cli_prints_a_progress_line_when_stdout_is_a_file(demo_dir, presets_dir, tmp_path, capsys, monkeypatch,
                                                             every_step) -> None:
    monkeypatch.setattr(console, "PLAIN_EVERY_S", 0.0)
    assert not console.console.is_terminal  # captured, as `> log` is
    code = main(["train", "--data", str(demo_dir), "--presets", str(presets_dir), "--runs", str(tmp_path / "runs"),
                 "--preset", "tiny", "--epochs", "1"])
    out = capsys.readouterr().out
    assert code == 0
    lines = [line for line in out.splitlines() if line.startswith("epoch 1/1 · ")]
    assert lines and "frames/s · epoch ends in " in lines[-1] and " · loss " in lines[-1]
