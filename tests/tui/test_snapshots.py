"""SVG snapshots of the main states (pytest --snapshot-update regenerates them).

Deterministic by construction: paths are relative to a fresh working folder, the trainer and run
store read a fixed clock (run ids, dates, seconds, frames/s), torch uses one thread, and the cursor
does not blink.
"""

from __future__ import annotations

from textual.widgets import Input

from .pilot_helpers import ready, train_to_end


def test_idle(make_app, snap_compare) -> None:
    assert snap_compare(make_app(), terminal_size=(120, 36), run_before=ready)


def test_invalid_form(make_app, snap_compare) -> None:
    async def type_bad_values(pilot) -> None:
        await ready(pilot)
        app = pilot.app
        app.query_one("#f-lr", Input).value = "0"
        app.query_one("#f-batch_size", Input).value = "9999"
        await pilot.pause()
        await pilot.press("f5")

    assert snap_compare(make_app("--epochs", "two"), terminal_size=(80, 24), run_before=type_bad_values)


def test_finished(make_app, fixed_clock, snap_compare) -> None:
    async def train(pilot) -> None:
        await ready(pilot)
        await train_to_end(pilot)

    assert snap_compare(make_app(), terminal_size=(120, 36), run_before=train)


def test_finished_small(make_app, fixed_clock, snap_compare) -> None:
    async def train(pilot) -> None:
        await ready(pilot)
        await train_to_end(pilot)

    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=train)


def test_history(make_app, fixed_clock, snap_compare) -> None:
    async def train_then_browse(pilot) -> None:
        await ready(pilot)
        await train_to_end(pilot)
        await pilot.press("f2")
        await pilot.pause()

    assert snap_compare(make_app("--lr", "0.003"), terminal_size=(120, 36), run_before=train_then_browse)
