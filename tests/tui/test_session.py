"""The session's pure parts: what Start makes of the form, and the snapshots its events carry."""

from __future__ import annotations

import pytest

from phonetui import runs
from phonetui import space
from phonetui.tui.session import _snapshot


def test_start_decides_a_run_a_sweep_or_a_search_from_the_values() -> None:
    job = lambda **texts: space.job(space.parse(k, t) for k, t in texts.items())  # noqa: E731
    assert job() == job(lr="1e-3") == "run"
    assert job(lr="1e-3,3e-3") == "sweep"
    assert job(lr="1e-4:1e-2") == "search"
    assert job(lr="1e-4:1e-2", batch_size="64,128") == "search"  # the lists become its choices
    assert job(device="cuda:1") == "run"  # a colon inside a text value is the value's own


def test_an_event_carries_the_run_as_it_was_not_the_live_one(tiny, tmp_path) -> None:
    from phonetui import trainer

    run = runs.create(tmp_path, tiny, {"started": "2021-03-01 12:00:00"})
    event = _snapshot(trainer.Finished(run))
    run.write_status(epochs_done=3, best_val_acc=0.5)
    seen = event.run
    assert seen is not run and seen.status.epochs_done == 0 and seen.status.best_val_acc is None
    with pytest.raises(RuntimeError, match="only the training process"):
        seen.write_status(epochs_done=1)  # a snapshot holds no lock: it cannot write
    assert _snapshot(trainer.Progress(1, 2, 3, 4, 5.0)) == trainer.Progress(1, 2, 3, 4, 5.0)
    run.release()


def test_the_status_line_of_each_trainer_event(tiny, tmp_path) -> None:
    from phonetui import trainer
    from phonetui.runs import EpochMetrics
    from phonetui.tui.status import event_line

    run = runs.create(tmp_path, tiny, {"started": "2021-03-01 12:00:00"})
    text, kind, toast = event_line(trainer.RunStarted(run, "cpu", 1000, 250), None)
    assert text == f"training {run.id}" and (kind, toast) == ("info", False)  # the run line says the rest
    m = EpochMetrics(epoch=2, train_acc=0.5, train_loss=1.25, val_acc=0.625, val_loss=1.0, lr=1e-3, seconds=1.0)
    assert event_line(trainer.EpochEnd(m, 5), None)[0] == "epoch 2/5: train acc 0.5000 loss 1.2500 · val acc 0.6250 loss 1.0000"
    assert event_line(trainer.BestSaved(2, 0.625, run.path), None) == ("saving model with acc 0.625", "ok", False)
    assert event_line(trainer.BestSaved(2, None, run.path), None) is None  # no validation split: nothing to say
    assert event_line(trainer.Progress(1, 2, 3, 4, 5.0), None) is None
    run.write_status(status="stopped", epochs_done=2, best_epoch=2, best_val_acc=0.625)
    text, kind, toast = event_line(trainer.Cancelled(run.snapshot()), 2)
    assert text == f"stopped {run.id}: the best model (epoch 2) is kept · F10 on it in History resumes it" and toast
    assert "no model was saved yet" in event_line(trainer.Cancelled(run.snapshot()), None)[0]
    text, kind, _ = event_line(trainer.Finished(run.snapshot()), 2)
    assert text == f"finished {run.id}: best val acc 0.6250 at epoch 2 · F9 exports the CSV" and kind == "ok"
    run.release()
