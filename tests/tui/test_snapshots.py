"""SVG snapshots of the main states, each at 80x24 and 120x36 (pytest --snapshot-update regenerates them).

Deterministic by construction: no training runs here. Runs are fed to the app as fixed events
(pilot_helpers.feed_run) with real run folders; paths are relative to a fresh working folder, the
run store and the app's run times read a fixed clock, toasts are cleared before the picture, and
the cursor does not blink.
"""

from __future__ import annotations

import pytest
from textual.widgets import Input

from .pilot_helpers import CURVE, feed_run, ready


SIZES = pytest.mark.parametrize("size", [(80, 24), (120, 36)], ids=["80x24", "120x36"])


@SIZES
def test_idle(make_app, snap_compare, size) -> None:
    assert snap_compare(make_app(), terminal_size=size, run_before=ready)


@SIZES
def test_invalid_form(make_app, snap_compare, size) -> None:
    async def type_bad_values(pilot) -> None:
        await ready(pilot)
        app = pilot.app
        app.query_one("#f-lr", Input).value = "0"
        app.query_one("#f-batch_size", Input).value = "9999"
        await pilot.pause()
        await pilot.press("f5")

    assert snap_compare(make_app("--epochs", "two"), terminal_size=size, run_before=type_bad_values)


@SIZES
def test_training(make_app, fixed_clock, snap_compare, size) -> None:
    async def mid_run(pilot) -> None:
        """Three epochs of a run and half of the fourth, as fixed events: the points inside the epoch
        and its running loss and accuracy (on 80 columns Training takes the width)."""
        from pathlib import Path

        from phonetui import runs, trainer
        from phonetui.tui.messages import TrainerEvent

        await ready(pilot)
        main = pilot.app.main
        run = runs.create(Path("runs"), main.form.config().with_training(epochs=5), {"started": "2021-03-01 12:00:00"})
        main.training = True
        main.place_left()
        post = lambda e: main.panel.post_message(TrainerEvent(e))  # noqa: E731
        post(trainer.RunStarted(run, "cpu", 2400, 600))
        for epoch, (ta, tl, va, vl) in enumerate(CURVE[:3], 1):
            for k in range(1, 5):  # four points inside each epoch, the loss falling through it
                post(trainer.WithinEpoch(runs.StepPoint(epoch, epoch - 1 + k / 4, (epoch - 1) * 20 + k * 5,
                                                        tl + 0.3 * (1 - k / 4), ta - 0.05 * (1 - k / 4), 1e-3)))
            post(trainer.EpochEnd(runs.EpochMetrics(epoch, ta, tl, va, vl, 1e-3, 1.5), 5))
        post(trainer.BestSaved(3, CURVE[2][2], run.path / runs.CHECKPOINT))
        for k in (1, 2):
            post(trainer.WithinEpoch(runs.StepPoint(4, 3 + k / 4, 60 + k * 5, 0.86 - 0.02 * k, 0.72 + 0.01 * k, 1e-3)))
        post(trainer.Progress(4, 5, 1200, 2400, 1000.0, None, 0.83, 0.73))
        await pilot.pause(0.2)
        pilot.app.clear_notifications()
        await _scrolled_to_cursor(pilot)
        run.release()

    assert snap_compare(make_app(), terminal_size=size, run_before=mid_run)


@SIZES
def test_finished(make_app, fixed_clock, snap_compare, size) -> None:
    assert snap_compare(make_app(), terminal_size=size, run_before=_finished)


async def _browsing(pilot) -> None:
    """A finished run, then the History tab."""
    await _finished(pilot)
    await pilot.press("f2")
    await pilot.pause(0.2)
    await _scrolled_to_cursor(pilot)  # History's details pane, in view now


@SIZES
def test_history(make_app, fixed_clock, snap_compare, size) -> None:
    assert snap_compare(make_app(), terminal_size=size, run_before=_browsing)


@SIZES
def test_compare(make_app, fixed_clock, snap_compare, size) -> None:
    async def compare_three(pilot) -> None:
        await ready(pilot)
        for i, lr in enumerate((1e-3, 3e-3, 1e-2)):  # run ids get -2, -3 on the fixed clock
            curve = [(ta, tl, va + 0.02 * i - 0.004 * i * e, vl) for e, (ta, tl, va, vl) in enumerate(CURVE)]
            await feed_run(pilot, lr=lr, curve=curve)
        pilot.app.clear_notifications()
        await pilot.press("f2", "space", "down", "space", "down", "space", "f4")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=size, run_before=compare_three)


@SIZES
def test_help(make_app, snap_compare, size) -> None:
    async def open_help(pilot) -> None:
        await ready(pilot)
        await pilot.press("f1")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=size, run_before=open_help)


async def _finished(pilot) -> None:
    await ready(pilot)
    await feed_run(pilot)
    pilot.app.clear_notifications()  # toasts expire on the wall clock: keep them out of snapshots
    await pilot.wait_for_scheduled_animations()
    await pilot.pause(0.2)  # let resizes (the epoch table's short headers) settle on a slow machine
    await _scrolled_to_cursor(pilot)


async def _scrolled_to_cursor(pilot) -> None:
    """Wait (up to 5 s) until each epoch table shows its cursor, on the last epoch, and has held still
    for 0.3 s: the table scrolls to its cursor after a refresh, and again when a scrollbar appears
    under it (EpochTable); a busy machine can leave either for after the picture, and a size that
    has not settled yet can make the first one look done (the old wait stopped there, 1 run in 4)."""
    tables = [t for t in pilot.app.query("RunView DataTable") if t.row_count and t.size.height]  # those in view

    def at_cursor() -> bool:
        for table in tables:
            scrollers = [w for w in table.ancestors_with_self if hasattr(w, "max_scroll_y")]
            if table.cursor_row != table.row_count - 1 or any(w.scroll_y < w.max_scroll_y for w in scrollers):
                return False
        return True

    steady = 0
    for _ in range(100):
        steady = steady + 1 if at_cursor() else 0
        if steady == 6:
            break
        await pilot.pause(0.05)
    else:
        raise AssertionError("an epoch table did not come to rest on its cursor within 5 s")
    for table in tables:  # Textual moves the scrollbar on a later frame: put it where the scroll is, as that frame would
        table.vertical_scrollbar.position = table.scroll_y
    await pilot.pause(0.1)
