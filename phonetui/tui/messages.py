"""Messages that background workers post to the app (the core's own events travel inside)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from ..data import TimitData
    from ..predict import Prediction
    from ..runs import Run


class DataLoaded(Message):
    """The data folder was opened and checked."""

    def __init__(self, data: TimitData) -> None:
        super().__init__()
        self.data = data


class DataFailed(Message):
    """The data folder could not be used; `error` is the one-line reason."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class TorchReady(Message):
    """torch is imported: the device names usable here, or why torch could not load."""

    def __init__(self, devices: frozenset[str], error: str | None = None) -> None:
        super().__init__()
        self.devices = devices
        self.error = error


class HistoryLoaded(Message):
    """The runs folder was read; `follow` names the run to select; `sweeps` maps each sweep with
    runs still to do to (left, total); `studies` names the Optuna studies."""

    def __init__(self, runs: list[Run], error: str | None = None, follow: str | None = None,
                 sweeps: dict[str, tuple[int, int]] | None = None, studies: list[str] | None = None) -> None:
        super().__init__()
        self.runs = runs
        self.error = error
        self.follow = follow
        self.sweeps = sweeps or {}
        self.studies = studies or []  # the Optuna studies of the runs folder's storage


class TrainerEvent(Message):  # its event's run is a snapshot (Run.snapshot), never the live one
    """One event of `phonetui.trainer` (RunStarted, Progress, EpochEnd, BestSaved, Finished, ...)."""

    def __init__(self, event: Any) -> None:
        super().__init__()
        self.event = event


@dataclass(frozen=True)
class JobSummary:
    """What a finished sweep or search leaves: a line saying so, and its best run (F9 exports it)."""

    text: str
    best: Run | None = None


class TrainingEnded(Message):
    """A job's worker returned: `outcome` is its last run's (finished, early-stopped, stopped,
    pruned, failed; None where it made no run), `error` the failure's one line, `summary` a
    finished sweep's or search's."""

    def __init__(self, outcome: str | None, error: str | None = None, summary: JobSummary | None = None) -> None:
        super().__init__()
        self.outcome = outcome
        self.error = error
        self.summary = summary


class Predicted(Message):
    """A run's (or, with run None, an ensemble's) test-set CSV was written."""

    def __init__(self, run: Run | None, prediction: Prediction) -> None:
        super().__init__()
        self.run = run
        self.prediction = prediction


class PredictFailed(Message):
    """Prediction or export failed; `error` is the one-line reason."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class Reported(Message):
    """The homework report was written (phonetui.report.Written: its folder and files)."""

    def __init__(self, written: Any) -> None:
        super().__init__()
        self.written = written


NoticeKind = Literal["info", "ok", "error"]


class Notice(Message):
    """A line for the status bar and the Log (kind: info, ok, error), from a pane to the screen."""

    def __init__(self, text: str, kind: NoticeKind = "info", toast: bool = False) -> None:
        super().__init__()
        self.text, self.kind, self.toast = text, kind, toast


class JobQueued(Message):
    """A sweep's or search's line for the Training tab: where the job stands ('' for a single run)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class JobLog(Message):
    """A line of a --jobs worker, for the Log tab only."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class RunsChanged(Message):
    """A job's worker started a run in the runs folder: History reads it again."""
