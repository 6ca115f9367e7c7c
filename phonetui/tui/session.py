"""A training session, with no widgets: the cancel flag, the run being trained, and ONE thread
worker that runs any job, `(listen, cancel) -> Run` (a run, a resume, a sweep, a search), joined
when the app closes. The events it posts carry snapshots of the run, never the live one the
trainer thread keeps changing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
from typing import Any, Callable

from textual.message_pump import MessagePump

from ..errors import one_line
from ..events import StopFlag
from .messages import JobSummary, Notice, TrainerEvent, TrainingEnded

Job = Callable[[Callable[[Any], None], threading.Event], Any]
JOIN_S = 5.0  # how long closing waits for the screen to take a stopped job's last events


class Session:
    """The cancel flag, the current run and the one training worker of a screen (`node`, where
    its messages go)."""

    def __init__(self, node: MessagePump, tensorboard: bool = False) -> None:
        self.node = node
        self.tensorboard = tensorboard  # each run's TensorBoard event files too
        self.cancel = StopFlag()
        self.run = None  # the run trained in this session (active or last): a snapshot
        self.worker = None
        self.idle = asyncio.Event()  # set while no job is active
        self.idle.set()

    @property
    def active(self) -> bool:
        return not self.idle.is_set()

    @active.setter
    def active(self, active: bool) -> None:
        if active:
            self.idle.clear()
        else:
            self.idle.set()

    def start(self, job: Job, name: str) -> None:
        """Run `job` in the worker thread (call only when no job is active)."""
        self.cancel.clear()
        self.active, self.run = True, None
        self.worker = self.node.run_worker(lambda: self._work(job), name=name, group="train", thread=True,
                                           exit_on_error=False)

    def _work(self, job: Job) -> None:
        from .. import tensorboard

        last = None  # the job's latest run: its outcome is the job's

        def post(e) -> None:
            nonlocal last
            last = getattr(e, "run", None) or last
            self.node.post_message(TrainerEvent(_snapshot(e)))

        error = result = None
        try:
            say = lambda line: self.node.post_message(Notice(line, "error"))  # noqa: E731 - TensorBoard's trouble
            result = job(tensorboard.tee(post, say) if self.tensorboard else post, self.cancel)
        except Exception as e:  # noqa: BLE001 - every failure is shown, the app keeps running
            error = one_line(e)
        outcome = (last.status.outcome or last.status.status) if last is not None else None
        summary = result if isinstance(result, JobSummary) else None
        self.node.post_message(TrainingEnded(outcome, error, summary))

    def ended(self) -> None:
        """The screen has taken the job's TrainingEnded (its last events came before it)."""
        self.active = False

    def stop(self) -> None:
        self.cancel.set()

    async def join(self) -> None:
        """Stop the job and wait for its worker, and for the screen to take its last events (the
        app is closing)."""
        self.cancel.set()
        if self.worker is not None:
            await self.worker.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.idle.wait(), JOIN_S)


def _snapshot(event):
    """The event with its run (if any) as it is now."""
    run = getattr(event, "run", None)
    return dataclasses.replace(event, run=run.snapshot()) if run is not None else event
