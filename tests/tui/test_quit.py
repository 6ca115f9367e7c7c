"""Quitting while a run trains: the app keeps the run it stopped, for `phonetui` to say, once the
app's screen is gone, which run it was and how to resume it."""

from __future__ import annotations

from pathlib import Path

from phonetui import runs
from phonetui.cli import left_line
from phonetui.tui.dialogs import Confirm

from tests.tui.pilot_helpers import ready, train_until_resumable, until


async def test_quitting_a_run_keeps_it_for_the_line_after_the_app(make_app) -> None:
    app = make_app("--epochs", "400", "--batch-size", "32")
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await train_until_resumable(pilot)
        await pilot.press("ctrl+q")
        await until(pilot, lambda: isinstance(app.screen, Confirm))
        await pilot.click("#confirm-yes")
        await until(pilot, lambda: not app.is_running, timeout=10)
    run = app.stopped_run
    assert run is not None and run.state == "stopped" and run.path.parent == Path("runs")
    n = run.status.epochs_done
    assert 1 <= n < 400 and n == len(runs.open_run(run.path).metrics())
    assert left_line(run) == f"stopped run {run.path} after epoch {n}: `phonetui resume {run.path}` continues it"


async def test_quitting_with_no_run_active_keeps_none(make_app) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+q")
        await until(pilot, lambda: not app.is_running, timeout=10)
    assert app.stopped_run is None
