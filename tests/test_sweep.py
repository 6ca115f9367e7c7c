"""Sweeps: grid parsing and expansion, the saved queue, running what is left."""

from __future__ import annotations

import threading

import pytest

from phonetui import sweep, trainer
from phonetui.errors import PhonetuiError


def test_grid_values_are_checked_and_expanded_first_key_slowest() -> None:
    grid = sweep.parse_grid({"lr": "1e-3, 3e-4,1e-3", "batch_size": "256,512"})
    assert grid == {"lr": [1e-3, 3e-4], "batch_size": [256, 512]}
    assert sweep.expand(grid) == [{"lr": 1e-3, "batch_size": 256}, {"lr": 1e-3, "batch_size": 512},
                                  {"lr": 3e-4, "batch_size": 256}, {"lr": 3e-4, "batch_size": 512}]
    with pytest.raises(PhonetuiError, match=r"--batch-size 0: must be an integer >= 1"):
        sweep.parse_grid({"batch_size": "64,0"})
    with pytest.raises(PhonetuiError, match="'optimizer' is not a training value a sweep can vary"):
        sweep.parse_grid({"optimizer": "adam,adamw"})


def test_a_sweep_is_saved_and_continues_where_it_stopped(tiny, demo, tmp_path) -> None:
    runs_dir = tmp_path / "runs"
    s = sweep.create(runs_dir, "tiny", sweep.parse_grid({"lr": "3e-3,1e-2", "epochs": "1"}))
    assert [t.values for t in sweep.load(runs_dir, s.id).trials] == [{"lr": 3e-3, "epochs": 1}, {"lr": 1e-2, "epochs": 1}]
    announced, cancel = [], threading.Event()
    stop_after_first = lambda e: cancel.set() if isinstance(e, trainer.Finished) else None  # noqa: E731
    assert not sweep.run(s, tiny, demo, stop_after_first, cancel)  # the second trial is stopped at once
    reopened = sweep.load(runs_dir, s.id)  # what another process sees: one trial finished, one is left
    assert all(t.run for t in reopened.trials) and [t.values for t in reopened.pending()] == [{"lr": 1e-2, "epochs": 1}]
    assert sweep.run(reopened, tiny, demo, announce=lambda i, n, t: announced.append((i, n, t.values["lr"])))
    assert announced == [(1, 1, 1e-2)] and not sweep.load(runs_dir, s.id).pending()
    board = sweep.leaderboard(sweep.load(runs_dir, s.id))
    accs = [run.status.best_val_acc for _, run in board]
    assert accs == sorted(accs, reverse=True) and all(run.state == "finished" for _, run in board)
    assert [s.id for s in sweep.list_sweeps(runs_dir)] == [s.id]
