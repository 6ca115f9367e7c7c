"""Optuna studies: the search space, SQLite storage in the runs folder, pruning, trials as runs."""

from __future__ import annotations

import pytest

from phonetui import runs, search
from phonetui.errors import PhonetuiError

optuna = pytest.importorskip("optuna")


def test_space_ranges_choices_and_fixed_values_are_checked() -> None:
    space, fixed = search.parse_space({"lr": "1e-4:1e-2", "batch_size": "64,128", "epochs": "3"})
    assert [str(d) for d in space] == ["0.0001:0.01", "64,128"] and fixed == {"epochs": 3}
    with pytest.raises(PhonetuiError, match=r"--lr 1e-2:1e-4: a range needs numbers LO:HI with LO < HI"):
        search.parse_space({"lr": "1e-2:1e-4"})
    with pytest.raises(PhonetuiError, match=r"--batch-size 0: must be an integer >= 1"):
        search.parse_space({"batch_size": "0,64"})
    with pytest.raises(PhonetuiError, match="give at least one flag a range"):
        search.parse_space({"epochs": "3"})


def test_a_study_on_sqlite_prunes_and_continues(tiny, demo, tmp_path) -> None:
    runs_dir = tmp_path / "runs"
    space, _ = search.parse_space({"lr": "1e-5:3e-2"})
    study = search.open_study(runs_dir, "tiny")
    assert search.optimize(study, tiny.with_training(epochs=4), space, demo, runs_dir, trials=8)
    assert (runs_dir / search.DB).is_file()
    again = search.open_study(runs_dir, "tiny")  # what another process (or machine) sees
    states = [t.state.name for t in again.trials]
    assert len(states) == 8 and set(states) <= {"COMPLETE", "PRUNED"}
    board = search.leaderboard(again)
    for row in board:
        run = runs.open_run(runs_dir / row["run"])
        assert run.config.training.lr == pytest.approx(row["params"]["lr"])
        if row["state"] == "pruned":
            assert run.status.message.startswith("pruned by Optuna")
    done = [r["value"] for r in board if r["state"] == "complete"]
    assert done == sorted(done, reverse=True)
