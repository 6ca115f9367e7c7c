"""Functional tests of the app with Pilot: form, training, stopping, export, history, trouble."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, TabbedContent

from phonetui.tui.app import PhonetuiApp
from phonetui.tui.charts import Chart
from phonetui.tui.dialogs import Compare, Confirm, Help, StudyBoard
from phonetui.tui.loading import DataLine
from phonetui.tui.messages import DataLoaded, TorchReady
from phonetui.tui.widgets import LogView, RunsTable, RunView

from .pilot_helpers import feed_run, ready, train_to_end, train_until_best, until


def field(app: PhonetuiApp, key: str) -> Input:
    return app.query_one(f"#f-{key}", Input)


def status(app: PhonetuiApp) -> str:
    return str(app.query_one("#status").render())


def record_status(app: PhonetuiApp) -> list[str]:
    """Every status line the app shows from now on (epoch lines can replace one before a test reads it)."""
    said: list[str] = []
    show = app.main.say
    app.main.say = lambda text, kind="info", toast=False: (said.append(text), show(text, kind, toast))[1]
    return said


@pytest.mark.slow
def test_tui_import_is_light() -> None:
    """Importing the app must not import torch, the trainer or data loading (first frame comes first)."""
    code = ("import sys, phonetui.tui.app; "
            "print(sorted(m for m in ('torch', 'phonetui.trainer', 'phonetui.data', 'phonetui.predict') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


async def test_preset_fills_form(make_app) -> None:
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        assert field(app, "batch_size").value == "256"
        presets = app.query_one("#presets")
        presets.focus()
        presets.highlighted = presets.get_option_index("baseline")
        await pilot.press("enter")
        assert [app.main.form.text(k) for k in ("lr", "batch_size", "epochs", "val_ratio", "seed", "device")] == \
            ["0.0001", "64", "20", "0.2", "0", "auto"]
        assert str(app.query_one("#form-title").render()) == "preset baseline · unmodified"


async def test_flags_prefill_and_modified(make_app) -> None:
    app = make_app("--lr", "0.01", "--epochs", "abc")
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        assert field(app, "lr").value == "0.01"
        assert str(app.query_one("#form-title").render()) == "preset tiny · modified: lr, epochs"
        assert app.main.form.problems == {"epochs": "not a number"}
        assert field(app, "epochs").has_class("-invalid")


async def test_invalid_values_block_start(make_app, workdir: Path) -> None:
    app = make_app("--device", "cuda:3")  # a device this machine lacks: listed, and marked invalid
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        field(app, "epochs").value = "0"
        field(app, "batch_size").value = "5000"
        await pilot.pause()
        assert app.main.form.problems == {"batch_size": "larger than the 2,400 training rows",
                                          "epochs": "must be an integer from 1 to 100000",
                                          "device": "not available here (have auto, cpu)"}
        await pilot.press("f5")
        assert status(app) == "cannot start: batch size larger than the 2,400 training rows"
        assert app.focused is field(app, "batch_size")
        await pilot.press("s")  # a letter typed into the field, not Start
        assert field(app, "batch_size").value.endswith("s")
        field(app, "lr").value = "-1"
        await pilot.pause()
        assert app.main.form.problems["lr"] == "must be > 0 (and < 10)"
        field(app, "lr").value = "abc"
        await pilot.pause()
        assert app.main.form.problems["lr"] == "not a number"
        field(app, "threads").value = "0"
        await pilot.pause()
        assert app.main.form.problems["threads"] == "must be auto or a thread count from 1 to 9999"
        assert not app.main.training and not (workdir / "runs").exists()


async def test_a_refusal_on_the_status_line_goes_once_the_field_is_fixed(make_app) -> None:
    app = make_app("--lr", "abc", "--batch-size", "0")
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        await pilot.press("f5")
        assert status(app) == "cannot start: lr not a number"
        field(app, "lr").value = "0.001"
        await pilot.pause()
        assert status(app) == "lr fixed; still batch size must be an integer >= 1"
        field(app, "batch_size").value = "64"
        await pilot.pause()
        assert status(app) == "batch size fixed: F5 starts the training"
        field(app, "lr").value = "0.002"
        await pilot.pause()
        assert status(app) == "batch size fixed: F5 starts the training"  # said once, not on every keystroke


@pytest.mark.slow
async def test_the_threads_flag_fills_the_form_and_the_run_trains_with_it(make_app, workdir: Path) -> None:
    app = make_app("--threads", "1", "--epochs", "1")
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        assert field(app, "threads").value == "1"
        await train_to_end(pilot)
        from phonetui import runs

        (run,) = runs.list_runs(workdir / "runs")
        assert run.config.training.threads == "1" and run.record["threads"] == 1
        assert run.record["threads_why"] == "threads = 1 (asked)"


async def test_min_steps_shows_the_epochs_it_gives_on_this_data(make_app) -> None:
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        hint = app.query_one("#r-min_steps")
        assert not hint.display  # min_steps 0: nothing to say
        field(app, "batch_size").value = "128"  # 2,400 training rows: 19 steps an epoch
        field(app, "epochs").value = "3"
        field(app, "min_steps").value = "100"
        await pilot.pause()
        assert hint.display and str(hint.render()) == "6 epochs here: 19 steps an epoch"
        assert not app.main.form.problems and hint.has_class("-hint")
        field(app, "min_steps").value = "50"  # 3 epochs already take 57 steps
        await pilot.pause()
        assert not hint.display


@pytest.mark.slow
async def test_train_export_and_history(make_app, workdir: Path) -> None:
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        await train_to_end(pilot)
        run = app.main.current_run
        assert run.state == "finished" and (run.path / "best.pt").exists()
        live = app.query_one("#live", RunView)
        assert live.query_one("DataTable").row_count == 3
        series = live.query_one(".acc-chart", Chart).series  # the epochs, and the points inside them
        assert [len(series["train"]), len(series["val"])] == [3, 3] and len(series["running"]) == len(run.steps())
        assert status(app).startswith(f"finished {run.id}: best val acc")
        assert app.query_one(RunsTable).row_count == 1

        await pilot.press("p")
        await until(pilot, lambda: status(app).startswith("wrote"))
        csv = run.path / "prediction.csv"
        lines = csv.read_text().splitlines()
        assert lines[0] == "Id,Class" and len(lines) == 501
        assert "(500 rows, test acc 0." in status(app)


@pytest.mark.slow
async def test_history_loads_config_back(make_app, workdir: Path) -> None:
    app = make_app("--lr", "0.003", "--epochs", "1")
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        await train_to_end(pilot)
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        table = app.query_one(RunsTable)
        assert table.row_count == 1 and table.selected().config.training.lr == 0.003
        await pilot.press("f2")
        assert app.query_one("#tabs").active == "history" and not app.query_one("#left").display  # full width
        assert app.query_one("#picked-view DataTable").row_count == 1
        await pilot.press("l")
        assert field(app, "lr").value == "0.003" and field(app, "epochs").value == "1"
        assert app.query_one("#tabs").active == "training" and app.query_one("#left").display
        assert "run " + table.selected().id in str(app.query_one("#form-title").render())
        await pilot.press("f2", "b")  # History's keys work in History
        assert table.sort_column == "best"
        await pilot.press("p")
        await until(pilot, lambda: status(app).startswith("wrote"))
        assert (table.selected().path / "prediction.csv").exists()


@pytest.mark.slow
async def test_stop_keeps_best_model(make_app) -> None:
    app = make_app("--epochs", "400", "--batch-size", "32")
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        await train_until_best(pilot)
        run_line = str(app.query_one("#run-line").render())
        app.main.form.fill(app.main.presets["baseline"], "preset baseline")  # F3 / a preset mid-run: the form only
        await pilot.pause()
        assert str(app.query_one("#run-line").render()) == run_line and "batch 32" in run_line
        table = app.query_one(RunsTable)  # History follows the run live, without reading the folder again
        await until(pilot, lambda: table.row_count == 1)
        row = lambda: table.get_row(app.main.current_run.id)  # noqa: E731
        await until(pilot, lambda: row()[3].startswith("epoch ") and row()[4] != "-" and row()[6].endswith("/400"))
        said = record_status(app)
        await pilot.press("f5")
        assert "a run is already active: stop it first (F6)" in said
        await pilot.press("x")
        await until(pilot, lambda: not app.main.training, timeout=10)
        run = app.main.current_run
        assert run.state == "stopped" and run.status.epochs_done < 400
        assert (run.path / "best.pt").exists()
        assert "the best model (epoch" in status(app)


async def test_quit_while_training_asks_then_stops(make_app) -> None:
    app = make_app("--epochs", "400", "--batch-size", "32")
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("f5")
        await until(pilot, lambda: app.main.current_run is not None)
        await pilot.press("ctrl+q")
        await until(pilot, lambda: isinstance(app.screen, Confirm))
        await pilot.press("escape")
        assert not isinstance(app.screen, Confirm) and app.main.training
        await pilot.press("ctrl+q")
        await until(pilot, lambda: isinstance(app.screen, Confirm))
        main = app.main
        await pilot.click("#confirm-yes")
        await until(pilot, lambda: not app.is_running, timeout=10)
    assert main.current_run.state == "stopped"


@pytest.mark.slow
async def test_sigterm_stops_the_run_and_quits(make_app) -> None:
    app = make_app("--epochs", "400", "--batch-size", "32")
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("f5")
        main = app.main
        await until(pilot, lambda: main.current_run is not None)
        os.kill(os.getpid(), signal.SIGTERM)
        await until(pilot, lambda: not app.is_running, timeout=10)
    assert main.current_run.state == "stopped" and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


async def test_failure_in_worker_keeps_app_running(make_app, workdir: Path) -> None:
    (workdir / "runs").write_text("not a folder")
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("f5")
        await until(pilot, lambda: status(app).startswith("training failed"))
        assert "runs" in status(app) and not app.main.training
        await pilot.press("p")
        assert status(app) == "nothing to export: no run trained in this session; select one in History (F2), then F9"


async def test_bad_data_folder_keeps_history(make_app, workdir: Path) -> None:
    app = make_app("--data", "nowhere")
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        assert "nowhere: data folder not found" in str(app.query_one("#data-line").render())
        await pilot.press("f5")
        assert status(app) == "cannot start: no data (nowhere: data folder not found)"
        await pilot.press("f2")
        assert str(app.query_one("#picked-info").render()) == "no runs yet"


async def test_damaged_runs_show_in_history_beside_good_ones(make_app, workdir: Path) -> None:
    from phonetui import runs
    from tests.conftest import TINY

    good, bad = runs.create(workdir / "runs", TINY, {}), runs.create(workdir / "runs", TINY, {})
    good.write_status(status="finished")
    good.release(), bad.release()
    (bad.path / runs.STATUS).write_text('{"status": "running", "pid": "12"}')
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        table = app.query_one(RunsTable)
        assert table.row_count == 2 and str(table.get_row(good.id)[3]) == "finished"
        assert str(table.get_row(bad.id)[3]) == "damaged"
        await pilot.press("f2")
        table.move_cursor(row=table.get_row_index(bad.id))
        await pilot.pause()
        assert str(app.query_one("#picked-info").render()) == \
            f"{bad.id}: damaged: status.json: 'pid' = \"12\" has the wrong type"
        await pilot.press("f3")
        assert status(app).startswith(f"cannot load its config: {bad.id} is damaged")
        await pilot.press("f9")
        assert status(app).startswith(f"cannot export: {bad.id} is damaged")


async def test_the_log_wraps_its_lines_whole_at_80_columns(make_app) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        words = " ".join(f"w{i:02d}" for i in range(40))  # 159 characters: wrapped, never cut
        app.main.say(words)
        app.query_one(TabbedContent).active = "log-tab"
        await pilot.pause()
        log = app.main.query_one("#log")
        shown = " ".join(line.text.strip() for line in log.lines)
        assert all(w in shown.split() for w in words.split()), shown
        assert log.virtual_size.width <= log.scrollable_content_region.width  # nothing wider than the tab


@pytest.mark.slow
async def test_tiny_terminal_does_not_crash(make_app) -> None:
    app = make_app("--epochs", "1")
    async with app.run_test(size=(30, 8)) as pilot:
        await ready(pilot)
        await train_to_end(pilot)
        await pilot.press("f2", "f7", "tab", "tab", "f3")
        await pilot.resize_terminal(20, 5)
        await pilot.pause()
        assert app.main.current_run.state == "finished"


@pytest.mark.slow
async def test_tagger_preset_counts_utterances_trains_and_shows_diagnostics(make_app, workdir: Path) -> None:
    app = make_app("--preset", "bilstm-small", "--epochs", "1")
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        data = app.main.data
        n_train = data.n_train(0.2, by_utterance=True)
        assert f" {n_train:,} train / {len(data.train_x) - n_train:,} val / " in str(app.query_one("#data-line").render())
        units = data.train_units(0.2, by_utterance=True)
        field(app, "batch_size").value = str(units + 1)
        await pilot.pause()
        assert app.main.form.problems == {"batch_size": f"larger than the {units:,} training utterances"}
        field(app, "batch_size").value = "4"
        await pilot.pause()
        await train_to_end(pilot)
        run = app.main.current_run
        assert run.state == "finished" and run.record["train_rows"] == n_train
        await pilot.press("f2")
        await pilot.pause()
        assert "weakest phones:" in str(app.query_one("#picked-info").render())


async def test_compare_marked_runs_then_delete_one(make_app, workdir: Path) -> None:
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        first = await feed_run(pilot, lr=1e-3)
        await feed_run(pilot, lr=0.0001633444833469307)
        table = app.query_one(RunsTable)
        await pilot.press("f2", "f4")
        assert "mark at least two runs" in status(app)
        await pilot.press("space", "down", "space", "f4")
        await until(pilot, lambda: isinstance(app.screen, Compare))
        compare = app.screen.query_one("#compare-table", DataTable)
        assert compare.row_count == 5 and len(compare.columns) == 3  # best, vs best, test, epochs, training.lr
        assert [str(c) for c in compare.get_row("vs best: val acc, 95%")][1:] == ["-", "-"]  # fed runs keep no counts
        assert [str(c) for c in compare.get_row("training.lr")] == ["training.lr", "0.001", "0.0001633"]
        chart = app.screen.query_one(Chart)
        assert [len(s) for s in chart.series.values()] == [5, 5]
        assert set(chart.series) == set(table.marked) and all(len(label.split("-")) >= 3 for label in chart.series)
        legend = str(app.screen.query_one("#compare-legend").render())  # above the curves, not drawn over them
        assert all(label in legend for label in chart.series) and set(chart.series_colors) == set(chart.series)
        await pilot.press("escape")
        table.move_cursor(row=table.get_row_index(first.id))
        await pilot.press("f8")
        await until(pilot, lambda: isinstance(app.screen, Confirm))
        assert app.screen.focused.id == "confirm-no"
        await pilot.press("left")  # arrow keys move between the buttons
        assert app.screen.focused.id == "confirm-yes"
        await pilot.press("enter")
        await until(pilot, lambda: table.row_count == 1)
        assert not first.path.exists() and status(app) == f"deleted {first.path}"


async def test_help_palette_and_sorting(make_app, workdir: Path) -> None:
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        await pilot.press("f1")
        await until(pilot, lambda: isinstance(app.screen, Help))
        from textual.widgets import Markdown

        text = app.screen.query_one(Markdown).source
        assert "`0.001,0.003`" in text and "`LO:HI`" in text and "**jobs**" in text  # the sweep and range syntax
        await pilot.press("escape")
        await pilot.press("ctrl+p")
        await pilot.press(*"preset: relu")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await until(pilot, lambda: app.main.form.base.preset == "relu")
        await feed_run(pilot, lr=1e-3, curve=[(0.5, 1.0, 0.6, 1.0)], epochs=1)
        await feed_run(pilot, lr=1e-2, curve=[(0.5, 1.0, 0.7, 1.0)], epochs=1)
        table = app.query_one(RunsTable)
        await pilot.press("f2")
        await pilot.click(RunsTable, offset=(1, 0))  # the header of the first column: marks, not sortable
        await pilot.pause()
        header = lambda key: str(table.columns[key].label)  # noqa: E731
        assert header("id") == "id ▼"
        app.main.history.header_clicked(DataTable.HeaderSelected(table, table.columns["lr"].key, 7, table.columns["lr"].label))
        assert header("lr") == "lr ▼" and header("id") == "id  "  # room kept for the arrow
        assert [table.get_row_at(i)[7] for i in range(2)] == ["0.01", "0.001"]
        app.main.history.header_clicked(DataTable.HeaderSelected(table, table.columns["lr"].key, 7, table.columns["lr"].label))
        assert header("lr") == "lr ▲" and [table.get_row_at(i)[7] for i in range(2)] == ["0.001", "0.01"]


async def test_export_on_training_tab_never_picks_an_old_run(make_app, workdir: Path) -> None:
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        old = await feed_run(pilot)
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        await pilot.press("f9")
        assert status(app) == "nothing to export: no run trained in this session; select one in History (F2), then F9"
        assert not (old.path / "prediction.csv").exists()


async def test_f5_before_the_data_and_torch_have_loaded_starts_once_they_have(make_app, workdir: Path) -> None:
    app = make_app("--epochs", "1")
    async with app.run_test(size=(120, 36)) as pilot:
        main, line = app.main, app.main.query_one(DataLine)
        await ready(pilot)
        loaded, line.data, line.note, line.devices = line.data, None, "loading data…", None  # the first seconds
        await pilot.press("f5")
        assert main.queued and status(app) == "F5 queued: training starts once the data has loaded (F6 cancels)"
        await pilot.press("f6")
        assert not main.queued and status(app) == "the queued start is cancelled"
        await pilot.press("f5")
        line.post_message(DataLoaded(loaded))  # the loader's messages, in their order (they bubble up to the screen)
        await until(pilot, lambda: main.data is not None)
        assert main.queued and not main.training
        line.post_message(TorchReady(frozenset({"auto", "cpu"})))
        await until(pilot, lambda: main.current_run is not None and not main.training)
        assert main.current_run.state == "finished" and not main.queued


async def test_sweep_from_the_form_and_one_left_from_before(make_app, workdir: Path) -> None:
    from phonetui import presets, sweep

    tiny = presets.get(presets.load_all([Path("tiny-presets")]), "tiny")
    old = sweep.create(Path("runs"), tiny, {"lr": [0.002], "epochs": [1]})  # as if the app had closed mid-sweep
    app = make_app("--epochs", "1")
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        assert app.main.history.pending_sweeps == {old.id: (1, 1)}
        field(app, "lr").value = "0.001, 0.003"
        await pilot.pause()
        assert "sweep of 2 runs" in str(app.query_one("#form-title").render())
        await pilot.press("f5")
        await until(pilot, lambda: not app.main.training)
        log = "\n".join(app.query_one("#log", LogView).entries)  # (the queue line gives way to the finished state)
        assert "run 1/2 (lr 0.001)" in log and "run 2/2 (lr 0.003)" in log
        table = app.query_one(RunsTable)
        assert table.row_count == 2 and {r.config.training.lr for r in table.runs.values()} == {0.001, 0.003}
        best = max(table.runs.values(), key=lambda r: r.status.best_val_acc)  # a finished state, and F9 exports the best
        assert app.main.current_run.id == best.id and not app.query_one("#queue-line").display
        assert f"2 runs; the best is {best.id}, val acc {best.status.best_val_acc:.4f}" in str(
            app.query_one("#run-line").render())
        await pilot.press("f9")
        await until(pilot, lambda: (best.path / "prediction.csv").exists())
        drop = sweep.create(Path("runs"), tiny, {"lr": [0.004]})
        app.main.history.reload()
        await until(pilot, lambda: drop.id in app.main.history.pending_sweeps)
        app.main.drop_sweep(drop.id)
        await until(pilot, lambda: drop.id not in app.main.history.pending_sweeps)
        assert f"dropped sweep {drop.id}" in status(app) and not drop.path.exists()
        app.main.continue_sweep(old.id)
        await until(pilot, lambda: not app.main.training and table.row_count == 3)
        assert not sweep.load(Path("runs"), old.id).pending()


@pytest.mark.slow
async def test_resume_a_stopped_run_in_the_app(make_app) -> None:
    app = make_app("--epochs", "400", "--batch-size", "32")
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        await train_until_best(pilot)
        await pilot.press("f6")
        await until(pilot, lambda: not app.main.training, timeout=10)
        run = app.main.current_run
        done = run.status.epochs_done
        await pilot.press("f2")
        await until(pilot, lambda: app.query_one(RunsTable).selected() is not None)
        await pilot.press("f10")
        await until(pilot, lambda: len(app.main.panel.live) > done + 1)
        await pilot.press("f6")
        await until(pilot, lambda: not app.main.training, timeout=10)
        assert app.main.current_run.path == run.path and app.main.current_run.status.epochs_done > done
        assert [m.epoch for m in app.main.panel.live] == list(range(1, len(app.main.panel.live) + 1))


@pytest.mark.slow
async def test_an_optuna_search_from_the_form(make_app, workdir: Path) -> None:
    app = make_app("--epochs", "2", "--trials", "3")
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        field(app, "lr").value = "0.01:0.001"
        await pilot.pause()
        assert app.main.form.problems == {"lr": "a range needs numbers LO:HI with LO < HI"}
        field(app, "lr").value = "0.0005:0.01"
        field(app, "batch_size").value = "128,256"
        await pilot.pause()
        assert "Optuna search, 3 trials" in str(app.query_one("#form-title").render())
        await train_to_end(pilot)
        assert app.query_one(RunsTable).row_count == 3 and (workdir / "runs" / "optuna.db").is_file()
        assert "Optuna search finished: best val acc" in status(app)
        line = str(app.query_one("#run-line").render())
        assert line.startswith("Optuna search finished: 3 trials (study tiny epochs=2); the best is ")
        assert app.main.current_run.id in line  # F9 exports it
        await until(pilot, lambda: app.main.history.studies == ["tiny epochs=2"])
        app.main.show_study("tiny epochs=2")  # as ctrl+p's "Optuna study: tiny epochs=2" does
        await until(pilot, lambda: isinstance(app.screen, StudyBoard) and app.screen.query("#study-table"))
        board = app.screen.query_one("#study-table", DataTable)  # composed: the screen can show before its widgets
        await until(pilot, lambda: board.row_count == 3)
        assert {str(board.get_row_at(i)[-2]) for i in range(3)} == {socket.gethostname()}


@pytest.mark.slow
async def test_an_optuna_search_with_two_jobs_from_the_form(make_app, workdir: Path) -> None:
    from phonetui import search

    app = make_app("--epochs", "30")
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        assert not app.query_one("#row-jobs").display  # the search's own fields: shown for a search only
        field(app, "lr").value = "0.0005:0.01"
        await pilot.pause()
        field(app, "trials").value = "2"
        field(app, "jobs").value = "0"
        await pilot.pause()
        assert app.query_one("#row-jobs").display and app.main.form.problems == {"jobs": "must be an integer >= 1"}
        field(app, "jobs").value = "2"
        await pilot.pause()
        assert "Optuna search, 2 trials, 2 at a time" in str(app.query_one("#form-title").render())
        await train_to_end(pilot)
        assert "Optuna search finished: best val acc" in status(app)
        a, b = search.open_study(workdir / "runs", "tiny epochs=30", create=False).trials
        assert a.state.name == b.state.name == "COMPLETE" and a.params["lr"] != b.params["lr"]
        assert a.datetime_start < b.datetime_complete and b.datetime_start < a.datetime_complete  # at once
        assert app.query_one(RunsTable).row_count == 2
        app.query_one(TabbedContent).active = "log-tab"  # a RichLog renders what it was given once shown
        await pilot.pause(0.2)
        log = "\n".join(line.text for line in app.query_one("#log").lines)
        assert "[job 1] trial " in log and "[job 2] trial " in log


@pytest.mark.slow
async def test_a_sweep_with_two_jobs_from_the_form(make_app, workdir: Path) -> None:
    from phonetui import runs, sweep

    app = make_app("--epochs", "2")
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        field(app, "lr").value = "0.001,0.003"
        await pilot.pause()
        assert app.query_one("#row-jobs").display and not app.query_one("#row-trials").display  # a sweep's own field
        field(app, "jobs").value = "2"
        await pilot.pause()
        assert "sweep of 2 runs, 2 at a time" in str(app.query_one("#form-title").render())
        await train_to_end(pilot)
        (s,) = sweep.list_sweeps(workdir / "runs")
        assert not s.pending() and {runs.open_run(workdir / "runs" / t.run).state for t in s.trials} == {"finished"}
        assert "finished: History ranks its runs" in status(app)
        assert app.query_one(RunsTable).row_count == 2
        assert app.main.current_run is not None and "the best is" in str(app.query_one("#run-line").render())
        app.query_one(TabbedContent).active = "log-tab"
        await pilot.pause(0.2)
        log = "\n".join(line.text for line in app.query_one("#log").lines)
        assert "[trial 1] " in log and "[trial 2] " in log


async def test_the_marked_runs_export_as_one_ensemble(make_app, workdir: Path) -> None:
    import json

    from phonetui import data, presets, trainer

    tiny = presets.get(presets.load_all([Path("tiny-presets")]), "tiny").with_training(epochs=1)
    demo = data.load(Path("demo"))
    a, b = (trainer.train(tiny.with_training(seed=s), demo, Path("runs")) for s in (1, 2))
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        await pilot.press("f2", "e")
        assert "mark two or more runs" in status(app)
        await pilot.press("space", "down", "space", "e")
        await pilot.pause()
        assert app.screen.query_one("#ensemble-title").render().plain.startswith("Export an ensemble of 2 runs")
        await pilot.press("escape")  # cancelled: nothing written
        await pilot.pause()
        assert not list(Path("runs").glob("ensemble-*"))
        await pilot.press("e")
        await pilot.pause()
        await pilot.press("shift+tab", "enter", "down", "enter")  # weights: chosen on the validation split
        await pilot.press("shift+tab", "enter", "down", "enter")  # decode: viterbi
        await pilot.press("tab", "tab", "enter")  # Export
        await until(pilot, lambda: status(app).startswith("wrote runs/ensemble-"))
        (record,) = Path("runs").glob("ensemble-*.json")
        written = json.loads(record.read_text())
        assert sorted(m["run"] for m in written["members"]) == sorted([a.id, b.id])
        assert written["decode"] == "viterbi" and written["weights_from"] == "val" and "scale" in written
        assert record.with_suffix(".csv").read_text().startswith("Id,Class\n")


async def test_the_next_run_of_a_sweep_starts_with_an_empty_panel(make_app, workdir: Path) -> None:
    from phonetui import runs, trainer
    from phonetui.tui.messages import TrainerEvent
    from phonetui.tui.widgets import RunView

    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        await feed_run(pilot, epochs=3)
        view = app.main.panel.query_one(RunView)
        assert len(view.metrics) == 3
        nxt = runs.create(Path("runs"), app.main.form.config(), {"started": "2021-03-01 12:01:00"})
        app.main.panel.post_message(TrainerEvent(trainer.RunStarted(nxt, "cpu", 2400, 600)))
        await pilot.pause()
        assert view.metrics == [] and view.query_one(DataTable).row_count == 0
        assert nxt.id in str(app.query_one("#run-line").render())
        nxt.release()


async def test_history_says_its_order_and_shows_the_active_run_s_progress(make_app, workdir: Path) -> None:
    from phonetui import runs, trainer
    from phonetui.tui.messages import TrainerEvent

    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        await feed_run(pilot, lr=1e-3)
        await feed_run(pilot, lr=3e-3, end="stopped")
        assert "F10 on it in History resumes it" in status(app)
        await pilot.press("f2", "f7")
        await pilot.pause()
        table = app.query_one(RunsTable)
        best = table.columns["best"]
        assert str(best.label) == "best val ▼" and best.get_render_width(table) >= len("best val ▼") + 2
        assert status(app) == "history sorted by best val acc, highest first"
        table.sort_by("lr", False)  # as a click on the header does
        assert table.sort_line() == "history sorted by lr, lowest first"
        nxt = runs.create(Path("runs"), app.main.form.config(), {"started": "2021-03-01 12:02:00"})
        app.main.training = True
        app.main.panel.post_message(TrainerEvent(trainer.RunStarted(nxt, "cpu", 2400, 600)))
        await until(pilot, lambda: nxt.id in table.runs)
        app.main.panel.post_message(TrainerEvent(trainer.Progress(1, 5, 1200, 2400, 1000.0)))
        await pilot.pause()
        assert str(table.get_cell(nxt.id, "status")) == "epoch 1 50%"  # the epoch in progress, and its share done
        assert table.columns["status"].get_render_width(table) >= len("epoch 1 50%") + 2  # shown whole, not cut
        nxt.release()


async def test_a_resumed_run_counts_the_epochs_it_trained_now(make_app, workdir: Path) -> None:
    from phonetui import runs, trainer
    from phonetui.tui.messages import TrainerEvent

    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        run = runs.create(Path("runs"), app.main.form.config(), {"started": "2021-03-01 12:00:00"})
        post = lambda e: app.main.panel.post_message(TrainerEvent(e))  # noqa: E731
        app.main.training = True
        post(trainer.RunStarted(run, "cpu", 2400, 600))
        for epoch in (1, 2, 3):
            post(trainer.EpochEnd(runs.EpochMetrics(epoch, 0.5, 1.0, 0.5, 1.0, 1e-3, 1.0), 3, earlier=epoch < 3))
        run.write_status(status="finished")
        run.release()
        post(trainer.Finished(run))
        await pilot.pause()
        assert str(app.query_one("#progress-label").render()).startswith("finished 1 epoch in ")
        assert str(app.query_one("#progress-label").render()).endswith("(epoch 3 of a resumed run)")


async def test_without_optuna_the_form_says_so_before_start(make_app, monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "optuna", None)  # as if the search extra were not installed
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        field(app, "lr").value = "0.0005:0.01"
        await pilot.pause()
        assert app.main.form.problems == {"lr": "an Optuna search needs the search extra: pip install 'phonetui[search]'"}
        field(app, "lr").value = "0.0005,0.01"  # a sweep needs no Optuna
        await pilot.pause()
        assert app.main.form.problems == {}


async def test_lines_that_arrive_while_the_log_is_hidden_wrap_at_its_width(make_app) -> None:
    """They were wrapped at 20 columns once the Log had been viewed (RichLog's min_width, the width
    of a hidden tab), which made a --jobs search's worker lines unreadable."""
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        tabs = app.query_one(TabbedContent)
        tabs.active = "log-tab"
        await pilot.pause(0.2)
        tabs.active = "training"
        await pilot.pause(0.2)
        app.main.log_line("[job 1] " + "x" * 100)
        tabs.active = "log-tab"
        log = app.query_one("#log")
        await until(pilot, lambda: any("x" * 100 in line.text for line in log.lines))
        assert all(len(line.text.rstrip()) <= 116 for line in log.lines)
