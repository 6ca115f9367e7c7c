"""The session's pure parts: what Start makes of the form, and the snapshots its events carry."""

from __future__ import annotations

import pytest

from phonetui import runs
from phonetui.tui.session import _snapshot, decide


def test_start_decides_a_run_a_sweep_or_a_search_from_the_form() -> None:
    assert decide({}, {}) == "run"
    assert decide({}, {"lr": [1e-3, 3e-3]}) == "sweep"
    assert decide({"lr": "1e-4:1e-2"}, {}) == "search"
    assert decide({"lr": "1e-4:1e-2"}, {"batch_size": [64, 128]}) == "search"  # the lists become its choices


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
