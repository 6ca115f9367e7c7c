"""What a training says as it runs, how it ended, and the flag that stops it: one home for the
trainer, its listeners (the CLI's printer, the app's panes, TensorBoard, sweeps and searches) and
the clients that stop it. Imports no torch, so the app can match events before torch has loaded.

A listener matches events with `match` on their types. The stop flag is checked between batches;
it carries the reason and the Outcome the stopped run records (the user, a signal, Optuna's pruner).
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .runs import Outcome  # how a run ended: the run store's, shared with the stop flag

if TYPE_CHECKING:
    from .noise import Interval
    from .runs import EpochMetrics, Run, StepPoint

@dataclass(frozen=True)
class RunStarted:
    run: Run
    device: str  # e.g. "cpu, 2 threads" or "cuda, bf16 autocast"
    n_train: int
    n_val: int


@dataclass(frozen=True)
class Progress:
    epoch: int
    epochs: int
    frames: int
    total: int
    frames_per_s: float
    device: str | None = None  # a GPU's memory and utilisation (device.gpu_line)
    train_loss: float | None = None  # the epoch's running means, as last read (None before the first read)
    train_acc: float | None = None

    @property
    def eta_s(self) -> float:
        """Seconds until this epoch ends, at its rate so far."""
        return (self.total - self.frames) / self.frames_per_s if self.frames_per_s else float("inf")

    def means(self) -> str:
        """' · loss L · acc A': the epoch's running means ('' before the first read)."""
        if self.train_loss is None or self.train_acc is None:
            return ""
        return f" · loss {self.train_loss:.4f} · acc {self.train_acc:.4f}"

    def line(self) -> str:
        """The epoch's state in words, as the CLI prints it without a bar: share done, means, speed, ETA."""
        return (f"epoch {self.epoch}/{self.epochs} · {self.frames / max(self.total, 1):.0%}{self.means()} · "
                f"{self.frames_per_s:,.0f} frames/s · epoch ends in {clock(self.eta_s)}")


def clock(seconds: float) -> str:
    """A duration as m:ss or h:mm:ss ('-' when unknown)."""
    if seconds == float("inf") or seconds != seconds:
        return "-"
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


@dataclass(frozen=True)
class WithinEpoch:
    """A point inside an epoch (runs.StepPoint), every few seconds; it is in steps.csv already."""

    point: StepPoint


@dataclass(frozen=True)
class EpochEnd:
    metrics: EpochMetrics
    epochs: int
    earlier: bool = False  # an epoch of a resumed run trained before it was stopped, replayed from its record


@dataclass(frozen=True)
class BestSaved:
    epoch: int
    val_acc: float | None
    path: Path
    gain: Interval | None = None  # over the last best model (`over`): 95% interval, paired over utterances
    over: int | None = None

    def line(self) -> str:
        """The course code's 'saving model with acc 0.704', and whether its gain is beyond noise."""
        said = f"saving model with acc {self.val_acc:.3f}"
        if self.gain is None or self.over is None:
            return said
        return f"{said}: {self.gain.pts()} over epoch {self.over}, {self.gain.verdict}"


@dataclass(frozen=True)
class Finished:
    run: Run


@dataclass(frozen=True)
class Cancelled:
    run: Run


@dataclass(frozen=True)
class Failed:
    run: Run | None
    message: str


Event = RunStarted | Progress | WithinEpoch | EpochEnd | BestSaved | Finished | Cancelled | Failed
Listener = Callable[[Event], None]


class StopFlag(threading.Event):
    """The flag a training checks between batches, with what a run stopped by it records."""

    def __init__(self, reason: str = "stopped by the user", outcome: Outcome = Outcome.STOPPED) -> None:
        super().__init__()
        self.reason, self.outcome = reason, outcome

    def stop(self, reason: str | None = None, outcome: Outcome | None = None) -> None:
        """Set the flag, with the reason and outcome the stopped run records (where given)."""
        self.reason, self.outcome = reason or self.reason, outcome or self.outcome
        self.set()

    def why(self) -> tuple[str, Outcome]:
        """What a run stopped by this flag records: (reason, outcome)."""
        return self.reason, self.outcome


class EitherStop(StopFlag):
    """A trial's flag: the user's stop (a StopFlag) or Optuna's pruning, with the reason the run records."""

    def __init__(self, stop: StopFlag, prune: threading.Event) -> None:
        super().__init__()
        self.user, self.prune = stop, prune

    def is_set(self) -> bool:
        return self.user.is_set() or self.prune.is_set()

    def why(self) -> tuple[str, Outcome]:
        if self.user.is_set():
            return self.user.why()
        return "pruned by Optuna (val acc below the median of earlier trials)", Outcome.PRUNED


def stop_flag(cancel: threading.Event | None) -> StopFlag:
    """A StopFlag for a caller's flag: itself, or a StopFlag that a plain threading.Event sets."""
    if isinstance(cancel, StopFlag):
        return cancel
    flag = StopFlag()
    if cancel is not None:
        flag.is_set = cancel.is_set  # type: ignore[method-assign] - the caller's flag is the one that is set
    return flag


@contextmanager
def signals_stop():
    """Ctrl+C, SIGTERM and SIGHUP stop a command: each sets the yielded StopFlag, which a training checks
    between batches, and raises KeyboardInterrupt (a training ends `stopped`, temp files are removed,
    and whatever else runs is cut short). The flag stops a training even where the exception is lost
    (raised inside a finaliser, say). The old handlers and signal mask come back after."""
    stop = StopFlag()  # set, with the reason a stopped run records, by Ctrl+C, SIGTERM or SIGHUP
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handle(signum: int, frame) -> None:
        if signum != signal.SIGINT:
            stop.stop(f"stopped by {signal.Signals(signum).name}", Outcome.STOPPED_BY_SIGNAL)
        stop.set()
        raise KeyboardInterrupt(stop.reason)

    # Installed for Ctrl+C too, and unblocked, for a process started with them ignored or blocked (a
    # background job, a parent that masked them): both are inherited, and would leave a training deaf.
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.signal(s, handle) for s in signals}
    mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
    try:
        yield stop
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for s, handler in old.items():
            signal.signal(s, handler)
