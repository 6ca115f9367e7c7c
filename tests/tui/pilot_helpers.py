"""Waiting on the app in Pilot tests: on conditions and workers, not on fixed sleeps."""

from __future__ import annotations

import time
from pathlib import Path
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


async def workers_done(pilot: Pilot) -> None:
    """Wait until no worker of the app is pending or running. (Textual's wait_for_complete raises
    WorkerCancelled for a worker that a newer exclusive one replaced, History's reload for one: done
    all the same.)"""
    from textual.worker import WorkerState

    await until(pilot, lambda: all(w.state not in (WorkerState.PENDING, WorkerState.RUNNING) for w in pilot.app.workers))


async def ready(pilot: Pilot) -> None:
    """Wait for the data, torch and the runs folder to load; turn off the cursor blink."""
    app, main = pilot.app, pilot.app.main
    await until(pilot, lambda: main.devices is not None and not main.data_note.startswith("loading"))
    await workers_done(pilot)
    await pilot.pause()
    for field in app.query(Input):
        field.cursor_blink = False


async def train_until_best(pilot: Pilot) -> None:
    """Press F5 and wait until the run has saved its first best model (the run goes on)."""
    await pilot.press("f5")
    await until(pilot, lambda: pilot.app.main.panel.best_epoch is not None)


async def train_until_resumable(pilot: Pilot) -> None:
    """Press F5 and wait until an epoch has ended and its last.pt is written (the run goes on)."""
    from phonetui import runs

    await pilot.press("f5")
    await until(pilot, lambda: any(Path("runs").glob(f"*/{runs.LAST}")))


async def train_to_end(pilot: Pilot) -> None:
    """Press F5 and wait until the run has ended."""
    app, main = pilot.app, pilot.app.main
    await pilot.press("f5")
    assert main.training or main.current_run is not None, app.query_one("#status").render()
    await until(pilot, lambda: not main.training)
    await workers_done(pilot)
    await pilot.pause()


CURVE = [(0.52, 1.61, 0.63, 1.22), (0.66, 1.05, 0.69, 0.98), (0.71, 0.88, 0.72, 0.90), (0.74, 0.80, 0.71, 0.92),
         (0.76, 0.74, 0.74, 0.85)]  # train acc, train loss, val acc, val loss: fixed numbers for snapshots


async def feed_run(pilot: Pilot, lr: float = 1e-3, epochs: int = 5, curve=CURVE, end: str = "finished"):
    """Drive the app with a fixed run's events (a real run folder, numbers from `curve`), as the
    training thread would post them; returns the Run. Snapshots built on it hold on any machine."""
    from phonetui import runs, trainer
    from phonetui.tui.messages import TrainerEvent, TrainingEnded

    main = pilot.app.main
    cfg = main.form.config().with_training(lr=lr, epochs=epochs)
    run = runs.create(Path("runs"), cfg, {"started": "2021-03-01 12:00:00", "device": "cpu", "train_rows": 2400,
                                          "val_rows": 600})
    main.training = True
    post = lambda event: main.panel.post_message(TrainerEvent(event))  # noqa: E731
    post(trainer.RunStarted(run, "cpu", 2400, 600))
    history, best = [], -1.0
    for epoch, (ta, tl, va, vl) in enumerate(curve[:epochs], 1):
        m = runs.EpochMetrics(epoch, ta, tl, va, vl, lr, 1.5)
        history.append(m)
        run.write_metrics(history)
        post(trainer.EpochEnd(m, epochs))
        if va > best:
            best = va
            post(trainer.BestSaved(epoch, va, run.path / runs.CHECKPOINT))
            run.write_status(best_epoch=epoch, best_val_acc=va)
        run.write_status(epochs_done=epoch)
    run.write_status(status=end)
    run.release()
    post(trainer.Finished(run) if end == "finished" else trainer.Cancelled(run))
    main.panel.post_message(TrainingEnded(end))
    await until(pilot, lambda: not main.training)
    await workers_done(pilot)
    await pilot.pause()
    return run
