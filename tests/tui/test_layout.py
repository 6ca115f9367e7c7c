"""The app at 80x24 and 120x36: every value shown whole, the help scrolls, the form says what a value
does, the footer keeps its palette key, the progress line breaks between its parts."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Footer, Select, Static

from phonetui import presets, runs, trainer
from phonetui.runs import StepPoint
from phonetui.tui.messages import TrainerEvent
from phonetui.tui.training import pack
from phonetui.tui.widgets import RunsTable, RunView

from .pilot_helpers import feed_run, ready, until, workers_done
from .test_app import field


async def test_the_epoch_table_shows_every_column_beside_the_form_at_80_columns(make_app, workdir: Path) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await feed_run(pilot, lr=1e-4, epochs=3)
        await pilot.pause()
        assert app.main.setup.display  # the form is back beside the Training tab
        table = app.main.panel.query_one(RunView).query_one(DataTable)
        assert table.virtual_size.width <= table.size.width, (table.virtual_size, table.size)
        assert str(table.get_row_at(0)[5]).strip() == "0.0001"


async def test_help_scrolls_at_80x24(make_app, workdir: Path) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("f1")
        scroll = app.screen.query_one("#help-dialog")
        await pilot.pause()
        assert scroll.max_scroll_y > 0 and scroll.scroll_y == 0
        await pilot.press("pagedown")
        await until(pilot, lambda: scroll.scroll_y > 0)
        await pilot.press("end")
        await until(pilot, lambda: scroll.scroll_y == scroll.max_scroll_y)


async def test_f3_moves_the_preset_picker_to_the_loaded_run_s_preset(make_app, workdir: Path) -> None:
    tiny = presets.get(presets.load_all([Path("tiny-presets")]), "tiny")
    run = runs.create(Path("runs"), tiny, {"started": "2021-03-01 12:00:00"})
    run.write_status(status="finished")
    run.release()
    app = make_app("--preset", "baseline")
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        picker = app.query_one("#preset-select", Select)
        assert picker.value == "baseline"
        await pilot.press("f2")
        await until(pilot, lambda: app.query_one(RunsTable).selected() is not None)
        await pilot.press("f3")
        await until(pilot, lambda: picker.value == "tiny")
        assert app.main.form.base.preset == "tiny"


async def test_val_ratio_says_what_it_does(make_app, workdir: Path) -> None:
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        n = app.main.data.n_train(0.999)
        field(app, "val_ratio").value = "0.999"
        await pilot.pause()
        batch = app.main.form.values()["batch_size"]
        assert app.main.form.problems == {"val_ratio": f"leaves {n:,} training rows, fewer than the batch size {batch}"}
        assert "fewer than the batch size" in str(app.query_one("#r-val_ratio", Static).render())
        assert not app.query_one("#r-batch_size", Static).display
        field(app, "val_ratio").value = "0"
        await pilot.pause()
        assert not app.main.form.problems
        hint = app.query_one("#r-val_ratio", Static)
        assert hint.display and str(hint.render()) == "no validation: the last epoch's model is kept (patience is off)"
        await pilot.press("f5")
        await until(pilot, lambda: not app.main.training)
        run = app.main.current_run
        assert run.state == "finished" and run.status.best_epoch == run.status.epochs_done  # the last epoch's model


async def test_the_footer_keeps_the_palette_key_at_80_columns(make_app, workdir: Path) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        footer = app.query_one(Footer)
        await pilot.pause()
        palette = [w for w in footer.query("*") if "palette" in str(getattr(w, "description", ""))]
        assert palette and all(w.region.right <= 80 and w.region.width > 0 for w in palette)


def test_the_progress_line_breaks_between_its_parts() -> None:
    parts = ["epoch 1/3 63%", "train loss 2.062, acc 0.439", "8,901 frames/s", "epoch ends in 0:15"]
    assert pack(parts, 62) == "epoch 1/3 63% · train loss 2.062, acc 0.439 · 8,901 frames/s\nepoch ends in 0:15"
    assert pack(parts, 20).split("\n") == parts  # never inside a part


async def test_the_charts_move_inside_the_first_epoch(make_app, workdir: Path) -> None:
    """Points inside an epoch reach the charts before the epoch ends (fixed events, as the trainer sends)."""
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        run = runs.create(Path("runs"), app.main.form.config(), {"started": "2021-03-01 12:00:00"})
        app.main.training = True
        post = lambda e: app.main.panel.post_message(TrainerEvent(e))  # noqa: E731
        post(trainer.RunStarted(run, "cpu", 2400, 600))
        for i, loss in enumerate((3.1, 2.4, 1.9), 1):
            post(trainer.WithinEpoch(StepPoint(1, i / 4, i * 5, loss, 0.2 * i, 1e-3)))
        post(trainer.Progress(1, 3, 1800, 2400, 900.0, None, 1.9, 0.6))
        view = app.main.panel.query_one(RunView)
        await until(pilot, lambda: len(view.steps) == 3)
        loss = view.query_one(".loss-chart").series
        assert loss["running"] == [(0.25, 3.1), (0.5, 2.4), (0.75, 1.9)] and loss["train"] == []
        label = str(app.query_one("#progress-label").render())
        assert "train loss 1.900, acc 0.600" in label and "epoch ends in 0:00" in label and "frames/s" in label
        assert all(len(line) <= app.query_one("#progress-label").size.width for line in label.split("\n"))
        run.release()
        app.main.training = False
        await workers_done(pilot)


async def test_the_epoch_table_shows_each_new_best_s_gain_and_whether_it_is_beyond_noise(make_app, workdir: Path) -> None:
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        await pilot.press("f2")  # History's details pane: the whole width
        view = app.main.history.query_one(RunView)
        m = [runs.EpochMetrics(1, 0.5, 1.2, 0.700, 1.0, 1e-3, 1.0),
             runs.EpochMetrics(2, 0.6, 1.0, 0.712, 0.9, 1e-3, 1.0, None, 0.008, 0.016),  # +1.20, 95% +0.80 to +1.60
             runs.EpochMetrics(3, 0.6, 1.0, 0.709, 0.9, 1e-3, 1.0),
             runs.EpochMetrics(4, 0.6, 1.0, 0.714, 0.9, 1e-3, 1.0, None, -0.001, 0.005)]  # +0.20, within noise
        view.show(m, 4)
        await pilot.pause()
        table = view.query_one(DataTable)
        assert [str(table.get_row_at(i)[-1]).strip() for i in range(4)] == ["", "+1.20±0.40✓", "", "+0.20±0.30~"]
        assert table.virtual_size.width <= table.size.width
        await pilot.press("f2", "f2")  # Log, then Training again: the form beside it leaves the table 72 columns
        view = app.main.panel.query_one(RunView)
        view.show(m, 4)
        await pilot.pause()
        table = view.query_one(DataTable)
        assert app.main.setup.display and str(table.get_row_at(1)[-1]).strip() == "+1.20±0.40✓"
        assert table.virtual_size.width <= table.size.width, (table.virtual_size, table.size)  # seen cut in tmux


async def test_the_run_line_keeps_every_part_and_the_lr_chart_shows_a_changing_rate(make_app, workdir: Path) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        run = runs.create(Path("runs"), app.main.form.config().with_training(schedule="cosine"),
                          {"started": "2021-03-01 12:00:00"})
        app.main.training = True
        app.main.place_left()
        app.main.panel.post_message(TrainerEvent(trainer.RunStarted(run, "cpu, 2 threads", 2400, 600)))
        line = app.query_one("#run-line")
        lines = lambda: str(line.render()).split("\n")  # noqa: E731
        await until(pilot, lambda: "val rows" in lines()[-1] and line.size.height == len(lines()))  # laid out again
        assert len(lines()) <= 3  # all of it shown, broken between parts, at the width left once the form goes
        view = app.main.panel.query_one(RunView)
        lr = view.query_one(".lr-chart")
        view.show([runs.EpochMetrics(1, 0.5, 1.2, 0.6, 1.1, 1e-3, 1.0)], 1)
        assert not lr.display  # one rate: a number in the run line, no curve
        view.show([runs.EpochMetrics(1, 0.5, 1.2, 0.6, 1.1, 1e-3, 1.0)], 1,
                  [StepPoint(2, 1.5, 30, 1.0, 0.6, 7e-4), StepPoint(2, 1.9, 40, 0.9, 0.62, 5e-4)])
        await pilot.pause()
        assert lr.display and lr.series["lr"] == [(0, 1e-3), (1.5, 7e-4), (1.9, 5e-4)]
        run.release()
        app.main.training = False
