"""History with Pilot: the training run followed live (its row, its details, Compare), each run's
sweep or study, the exported ensembles, and a run's confusions. Runs are fed as fixed events or
written as folders: nothing trains here."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
from textual.widgets import DataTable

from phonetui import runs, trainer
from phonetui.config import PHONES
from phonetui.tui.dialogs import Compare, Confusions
from phonetui.tui.messages import TrainerEvent
from phonetui.tui.widgets import RunsTable, RunView
from tests.conftest import TINY

from .pilot_helpers import ready, until, workers_done
from .test_app import status


def _epoch(epoch: int, val_acc: float) -> runs.EpochMetrics:
    return runs.EpochMetrics(epoch, 0.5, 1.0, val_acc, 1.0, 1e-3, 1.5)


async def _start(pilot, epochs: int = 5) -> runs.Run:
    """A run whose RunStarted the app has taken and whose row History shows (the folder read once)."""
    app = pilot.app
    run = runs.create(Path("runs"), app.main.form.config().with_training(epochs=epochs), {"started": "2021-03-01 12:00:00"})
    app.main.training = True
    app.main.panel.post_message(TrainerEvent(trainer.RunStarted(run, "cpu", 2400, 600)))
    await until(pilot, lambda: run.id in app.query_one(RunsTable).runs)
    await workers_done(pilot)
    return run


async def _epochs(pilot, run: runs.Run, accs: list[float], best: set[int]) -> None:
    """Epochs ending with val accuracies `accs`, a best model saved at the epochs in `best`, as the
    trainer emits them: metrics.csv written before each EpochEnd, status.json not yet (it comes after)."""
    done = run.metrics()
    for acc in accs:
        m = _epoch(len(done) + 1, acc)
        done.append(m)
        run.write_metrics(done)
        pilot.app.main.panel.post_message(TrainerEvent(trainer.EpochEnd(m, run.config.training.epochs)))
        if m.epoch in best:
            pilot.app.main.panel.post_message(TrainerEvent(trainer.BestSaved(m.epoch, acc, run.path / runs.CHECKPOINT)))
    await pilot.pause()


async def test_compare_shows_the_runs_as_they_are_now(make_app, workdir: Path) -> None:
    other = runs.create(workdir / "runs", TINY.with_training(epochs=5), {})
    other.write_metrics([_epoch(1, 0.5)])
    other.write_status(epochs_done=1, best_epoch=1, best_val_acc=0.5)
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        other.write_metrics([_epoch(1, 0.5), _epoch(2, 0.6), _epoch(3, 0.7)])  # trained on by another process
        other.write_status(status="finished", epochs_done=3, best_epoch=3, best_val_acc=0.7)
        other.release()
        training = await _start(pilot)
        await _epochs(pilot, training, [0.6, 0.65], {1, 2})
        await pilot.press("f2")
        table = app.query_one(RunsTable)
        for run in (training, other):
            table.move_cursor(row=table.get_row_index(run.id))
            await pilot.press("space")
        await pilot.press("f4")
        await until(pilot, lambda: isinstance(app.screen, Compare))
        compare = app.screen.query_one("#compare-table", DataTable)
        shown = lambda key: dict(zip((r.id for r in app.screen.runs), map(str, compare.get_row(key)[1:])))  # noqa: E731
        assert shown("epochs") == {training.id: "2/5", other.id: "3/5"}
        assert shown("best val acc") == {training.id: "0.6500", other.id: "0.7000"}
        training.release()


async def test_the_details_of_the_training_run_follow_its_epochs_and_best(make_app, workdir: Path) -> None:
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        run = await _start(pilot)
        await pilot.press("f2")
        view = app.query_one("#picked-view", RunView)
        star = lambda: [str(view.query_one(DataTable).get_row_at(i)[0]) for i in range(len(view.metrics))]  # noqa: E731
        await _epochs(pilot, run, [0.6, 0.55], {1})
        assert [m.epoch for m in view.metrics] == [1, 2] and view.best_epoch == 1 and star() == ["1*", "2 "]
        await _epochs(pilot, run, [0.7], {3})
        assert [m.epoch for m in view.metrics] == [1, 2, 3] and view.best_epoch == 3 and star() == ["1 ", "2 ", "3*"]
        assert str(app.query_one(RunsTable).get_cell(run.id, "best")) == "0.7000"
        run.release()


async def test_the_training_status_names_the_epoch_in_progress(make_app, workdir: Path) -> None:
    for size in ((120, 36), (80, 24)):
        app = make_app()
        async with app.run_test(size=size) as pilot:
            await ready(pilot)
            run = await _start(pilot)
            await pilot.press("f2")
            await _epochs(pilot, run, [0.6, 0.65], {1})
            table = app.query_one(RunsTable)
            assert str(table.get_cell(run.id, "status")) == "epoch 2 100%"
            app.main.panel.post_message(TrainerEvent(trainer.Progress(3, 5, 1860, 2000, 1000.0)))
            await pilot.pause()
            assert str(table.get_cell(run.id, "status")) == "epoch 3 93%" and str(table.get_cell(run.id, "epochs")) == "2/5"
            assert table.virtual_size.width <= table.size.width  # every column in view
            run.release()


def _finished(runs_dir: Path, **training) -> runs.Run:
    run = runs.create(runs_dir, TINY.with_training(**training), {})
    run.write_status(status="finished", epochs_done=3, best_epoch=3, best_val_acc=0.7)
    run.release()
    return run


async def test_history_shows_each_run_s_sweep_or_study_and_sorts_by_it(make_app, workdir: Path) -> None:
    from phonetui import search, sweep

    swept, searched, alone = (_finished(workdir / "runs", lr=lr) for lr in (1e-3, 2e-3, 3e-3))
    queue = sweep.create(workdir / "runs", TINY, {"lr": [1e-3, 1e-2]})
    queue.trials[0].run = swept.id
    queue.save()
    study = search.open_study(workdir / "runs", "tiny epochs=3")
    with warnings.catch_warnings():  # a heartbeat is for Study.optimize: this trial is told at once
        warnings.simplefilter("ignore", UserWarning)
        trial = study.ask()
    trial.set_user_attr("runs", str((workdir / "runs").resolve()))
    trial.set_user_attr("run", searched.id)
    study.tell(trial, 0.7)
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        await pilot.press("f2")
        table = app.query_one(RunsTable)
        group = lambda run: str(table.get_cell(run.id, "group"))  # noqa: E731
        assert (group(swept), group(searched), group(alone)) == (queue.id.split("-", 1)[1], "tiny epochs…", "-")  # cut
        app.main.history.header_clicked(DataTable.HeaderSelected(table, table.columns["group"].key, 9,
                                                                 table.columns["group"].label))
        assert table.sort_line() == "history sorted by group, A to Z"
        assert [table.get_row_at(i)[1] for i in range(3)] == [alone.id, swept.id, searched.id]  # '-' first, then 1 < t
        for run, named in ((swept, f"sweep {queue.id}"), (searched, "study tiny epochs=3")):
            table.move_cursor(row=table.get_row_index(run.id))
            await pilot.pause()
            assert f" · {named}" in str(app.query_one("#picked-info").render())  # named whole
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("f2")
        await pilot.pause()
        table = app.query_one(RunsTable)
        assert "group" not in table.headers and table.virtual_size.width <= table.size.width  # every column in view


async def test_history_lists_the_exported_ensembles(make_app, workdir: Path) -> None:
    from phonetui.tui.history import ENSEMBLES_SHOWN

    a, b = _finished(workdir / "runs", seed=1), _finished(workdir / "runs", seed=2)
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        await pilot.press("f2")
        assert not app.query_one("#ensembles").display  # none exported yet
        record = {"members": [{"run": r.id, "path": str(r.path), "weight": 0.5} for r in (a, b)],
                  "csv": "runs/ensemble-20210301-120000.csv", "test_acc": 0.70125, "decode": "viterbi", "weights_from": "val"}
        (workdir / "runs" / "ensemble-20210301-120000.json").write_text(json.dumps(record))
        (workdir / "runs" / "ensemble-20210301-130000.json").write_text("{")
        app.main.history.reload()
        await until(pilot, lambda: app.query_one("#ensembles").display)
        lines = str(app.query_one("#ensembles").render()).splitlines()
        assert lines[0].startswith("ensemble-20210301-130000: unreadable (")
        assert lines[1] == (f"ensemble-20210301-120000: 2 runs ({a.id.split('-', 1)[1]}, {b.id.split('-', 1)[1]}) · "
                            "viterbi, val weights · test acc 0.7013")
        for hour in range(14, 14 + ENSEMBLES_SHOWN):
            (workdir / "runs" / f"ensemble-20210301-{hour}0000.json").write_text(json.dumps(record))
        app.main.history.reload()
        await until(pilot, lambda: len(str(app.query_one("#ensembles").render()).splitlines()) == ENSEMBLES_SHOWN)
        assert str(app.query_one("#ensembles").render()).splitlines()[-1].startswith("and 3 older ensembles")


async def test_v_shows_the_picked_run_s_worst_phones_and_their_confusions(make_app, workdir: Path) -> None:
    from phonetui import diagnostics

    plain, scored = _finished(workdir / "runs", seed=1), _finished(workdir / "runs", seed=2)
    counts = np.eye(len(PHONES), dtype=np.int64) * 10
    sh, s, z = PHONES.index("sh"), PHONES.index("s"), PHONES.index("z")
    counts[sh, sh], counts[sh, s], counts[sh, z] = 2, 6, 2
    counts[z, z], counts[z, s] = 5, 5
    diagnostics.write(scored, counts)
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("f2")
        table = app.query_one(RunsTable)
        table.move_cursor(row=table.get_row_index(plain.id))
        await pilot.press("v")
        assert status(app) == f"{plain.id} has no confusions yet: they come with a best model scored on the validation split"
        table.move_cursor(row=table.get_row_index(scored.id))
        await pilot.press("v")
        await until(pilot, lambda: isinstance(app.screen, Confusions))
        phones = app.screen.query_one(DataTable)
        assert phones.row_count == len(PHONES)
        assert [str(c) for c in phones.get_row_at(0)] == ["sh", "10", "0.2000", "s 60%, z 20%"]
        assert [str(c) for c in phones.get_row_at(1)] == ["z", "10", "0.5000", "s 50%"]
        assert [str(c) for c in phones.get_row_at(2)][2:] == ["1.0000", "-"]
        assert "(epoch 3)" in str(app.screen.query_one("#compare-title").render())
        await pilot.press("escape")
        assert not isinstance(app.screen, Confusions)
        (scored.path / diagnostics.PER_PHONE).write_text("class,phone\n0,iy\n")
        await pilot.press("v")
        assert status(app).endswith("malformed diagnostics ('frames')") and not isinstance(app.screen, Confusions)
