"""Waiting on the app in Pilot tests: on conditions and workers, not on fixed sleeps."""

from __future__ import annotations

import time
from typing import Callable

from textual.pilot import Pilot
from textual.widgets import Input


async def until(pilot: Pilot, condition: Callable[[], bool], timeout: float = 60) -> None:
    """Let the app run until condition() holds (fails after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {condition}")
        await pilot.pause(0.05)


async def ready(pilot: Pilot) -> None:
    """Wait for the data, torch and the runs folder to load; turn off the cursor blink."""
    app = pilot.app
    await until(pilot, lambda: app.devices is not None and not app.data_note.startswith("loading"))
    await app.workers.wait_for_complete()
    await pilot.pause()
    for field in app.query(Input):
        field.cursor_blink = False


async def train_to_end(pilot: Pilot) -> None:
    """Press F5 and wait until the run has ended."""
    app = pilot.app
    await pilot.press("f5")
    assert app.training or app.current_run is not None, app.query_one("#status").render()
    await until(pilot, lambda: not app.training)
    await app.workers.wait_for_complete()
    await pilot.pause()
