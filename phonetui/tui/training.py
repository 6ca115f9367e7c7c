"""The Training tab: the run being trained, its progress and curves, followed from the trainer's
events (which then go on up to the screen)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.markup import escape
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import ProgressBar, Static

from .. import diagnosis
from ..config import n_epochs
from ..diagnosis import Finding
from ..errors import PhonetuiError
from ..events import BestSaved, Cancelled, EpochEnd, Finished, Outcome, Progress, RunStarted, WithinEpoch, clock
from .messages import JobLog, JobQueued, TrainerEvent, TrainingEnded
from .widgets import EpochTable, RunView, findings_text

if TYPE_CHECKING:
    from ..noise import Interval
    from ..runs import EpochMetrics, StepPoint


def pack(parts: list[str], width: int) -> str:
    """`parts` joined by ' · ', broken into lines of at most `width` between parts, never inside one."""
    lines: list[str] = []
    for part in parts:
        if lines and len(lines[-1]) + 3 + len(part) <= width:
            lines[-1] += " · " + part
        else:
            lines.append(part)
    return "\n".join(lines)


class TrainingPanel(Vertical):
    """The run being trained: a line naming it (id, model, lr, batch, device, split), the epoch's
    progress with the epoch's and the run's times, and its curves and epoch table, from its events."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.live: list[EpochMetrics] = []
        self.points: list[StepPoint] = []  # inside the epochs (WithinEpoch)
        self.best_epoch: int | None = None
        self.best_acc: float | None = None
        self.earlier = 0
        self.started_at = 0.0
        self.run_parts: list[str] = []  # the run line's parts (drawn again at a new width)
        self.progress_parts: list[str] = []  # the progress label's, while an epoch is in progress
        self.run = None  # the run being followed (a snapshot from its events)
        self.findings: list[Finding] = []  # its diagnosis, as of its last epoch
        self.interval: Interval | None = None  # its best model's val acc interval (read as each best is saved)

    def compose(self) -> ComposeResult:
        yield Static(id="queue-line")
        yield Static("no run yet: F5 starts one", id="run-line")
        with Horizontal(id="progress-row"):
            yield ProgressBar(total=1, show_eta=False, show_percentage=False, id="progress")
            yield Static(id="progress-label")
        yield Static(id="findings")
        yield RunView(id="live")

    def _label(self, text: str) -> None:
        """A line of its own in the progress label (the epoch's progress parts go)."""
        self.progress_parts = []
        self.query_one("#progress-label", Static).update(text)

    def on_job_queued(self, message: JobQueued) -> None:
        message.stop()
        self.queue(message.text)

    def queue(self, text: str) -> None:
        """The sweep or search this run belongs to, and where it stands ('' for a single run)."""
        line = self.query_one("#queue-line", Static)
        line.update(escape(text))
        line.display = bool(text)

    def begin(self, what: str) -> None:
        self.live, self.best_epoch, self.best_acc, self.run, self.interval = [], None, None, None, None
        with self.app.batch_update():
            self.diagnose()
            self.queue("")
            self.query_one(RunView).show([], None)
            self.query_one(ProgressBar).update(total=1, progress=0)
            self._label("starting…")
            self.run_parts = []
            self.query_one("#run-line", Static).update(f"starting {escape(what)}…")

    def started(self, e) -> None:
        """RunStarted (a resumed run brings its best epoch; its earlier epochs follow as EpochEnd)."""
        self.started_at = time.monotonic()
        self.live, self.best_epoch, self.best_acc = [], e.run.status.best_epoch, e.run.status.best_val_acc
        self.points = self._earlier_points(e.run)
        self.run, self.interval = e.run, diagnosis.interval_of(e.run)  # a resumed run's best model's
        self.diagnose()
        self.earlier = 0  # epochs a resumed run had trained before, replayed as EpochEnd(earlier=True)
        t, m = e.run.config.training, e.run.config.model
        self.query_one(RunView).show([], None)  # a sweep's or search's next run: not the last one's curves
        self.query_one(ProgressBar).update(total=1, progress=0)
        self._label("starting…")
        self.run_parts = [e.run.id, m.summary(), f"lr {t.lr:g}", f"batch {t.batch_size}", e.device,
                          f"{e.n_train:,} train / {e.n_val:,} val rows"]
        self._run_line()

    def _run_line(self) -> None:
        """The run's id (bold), model, lr, batch, device and split, broken between parts at the line's width."""
        if self.run_parts:
            line = self.query_one("#run-line", Static)
            text = escape(pack(self.run_parts, line.size.width or 60))
            line.update(text.replace(escape(self.run_parts[0]), f"[b]{escape(self.run_parts[0])}[/b]", 1))

    def on_resize(self) -> None:
        self.call_after_refresh(self._run_line)
        self.call_after_refresh(self._progress_line)

    @staticmethod
    def _earlier_points(run) -> list[StepPoint]:
        """A resumed run's points inside the epochs it trained before (its cut epoch's go)."""
        if not run.status.epochs_done:
            return []
        try:
            return [p for p in run.steps() if p.epoch <= run.status.epochs_done]
        except PhonetuiError:
            return []  # a damaged steps.csv: the epochs still chart

    def progress(self, e) -> None:
        """The epoch's progress with its running train loss and accuracy, speed, when the epoch ends,
        the run's elapsed and remaining time (epochs still to come estimated from the mean of those
        done, or from this one's rate before the first ends), in lines broken between parts."""
        elapsed = time.monotonic() - self.started_at
        per_epoch = (sum(m.seconds for m in self.live) / len(self.live)) if self.live else e.total / max(e.frames_per_s, 1e-9)
        remaining = e.eta_s + (e.epochs - e.epoch) * per_epoch
        means = ([f"train loss {e.train_loss:.3f}, acc {e.train_acc:.3f}"]
                 if e.train_loss is not None and e.train_acc is not None else [])
        parts = [f"epoch {e.epoch}/{e.epochs} {e.frames / max(e.total, 1):.0%}", *means, f"{e.frames_per_s:,.0f} frames/s",
                 f"epoch ends in {clock(e.eta_s)}", f"run {clock(elapsed)} elapsed, {clock(remaining)} left",
                 *([e.device] if e.device else [])]
        self.progress_parts = parts
        with self.app.batch_update():
            self.query_one(ProgressBar).update(total=e.total, progress=e.frames)
            self._progress_line()

    def _progress_line(self) -> None:
        """The progress parts broken into lines at the label's width (again when that changes: the form
        goes as a run starts on a narrow screen)."""
        if self.progress_parts:
            label = self.query_one("#progress-label", Static)
            label.update(pack(self.progress_parts, label.size.width or 60))

    def point(self, e: WithinEpoch) -> None:
        self.points.append(e.point)
        self.query_one(RunView).show(self.live, self.best_epoch, self.points)

    def epoch(self, e) -> None:
        self.live.append(e.metrics)
        self.earlier += e.earlier
        with self.app.batch_update():
            bar = self.query_one(ProgressBar)
            bar.update(progress=bar.total)
            self._label(f"epoch {e.metrics.epoch}/{e.epochs} done · run {clock(time.monotonic() - self.started_at)} elapsed")
            self.query_one(RunView).show(self.live, self.best_epoch, self.points)
        if not e.earlier:
            self.diagnose()

    def best(self, e) -> None:
        self.best_epoch, self.best_acc = e.epoch, e.val_acc
        self.interval = diagnosis.interval_of(self.run) if self.run is not None else None  # its counts: just written
        self.query_one(RunView).show(self.live, self.best_epoch, self.points)
        self.diagnose()

    def diagnose(self) -> None:
        """The run's findings so far, under the progress; a finding new since the last epoch goes
        whole to the Log."""
        line = self.query_one("#findings", Static)
        if self.run is None:
            self.findings = []
        else:
            was = {f.id for f in self.findings}
            self.findings = diagnosis.of_run(self.run, self.live, self.points, self.interval)
            for f in self.findings:
                if f.id not in was:  # whole, in the Log (the status line keeps the run's own news)
                    self.post_message(JobLog(f"diagnosis: {f.line()}"))
        line.update(findings_text(self.findings))
        if line.display != bool(self.findings):
            line.display = bool(self.findings)
            table = self.query_one(EpochTable)  # shorter or taller now: its cursor's row back in view
            table.call_after_refresh(table.keep_cursor_in_view)

    def finished(self) -> None:
        trained = len(self.live) - self.earlier
        span = f"epoch {len(self.live)}" if trained == 1 else f"epochs {self.earlier + 1}-{len(self.live)}"
        of = f" ({span} of a resumed run)" if self.earlier else ""
        self._label(f"finished {n_epochs(trained)} in {clock(time.monotonic() - self.started_at)}{of}")

    def ended(self, how: str) -> None:
        self._label(how)

    def on_trainer_event(self, message: TrainerEvent) -> None:
        match e := message.event:
            case RunStarted():
                self.started(e)
            case Progress():
                self.progress(e)
            case WithinEpoch():
                self.point(e)
            case EpochEnd():
                self.epoch(e)
            case BestSaved():
                self.best(e)
            case Finished():
                self.finished()
            case Cancelled(run=run) if run.status.outcome != Outcome.PRUNED:
                self.ended("stopped")

    def on_training_ended(self, message: TrainingEnded) -> None:
        if message.error:
            self.ended("failed")
        elif message.summary is not None:
            self.summarise(message.summary)

    def summarise(self, summary) -> None:
        """A finished sweep or search: its line, and its best run's curves and epochs."""
        best = summary.best
        self.queue("")
        self.run_parts = []
        self.query_one("#run-line", Static).update(escape(summary.text))
        self._label("finished")
        if best is not None:
            try:
                metrics, steps = best.metrics(), best.steps()
            except PhonetuiError:
                metrics, steps = [], []
            self.live, self.points, self.best_epoch = metrics, steps, best.status.best_epoch
            self.query_one(RunView).show(metrics, best.status.best_epoch, steps)
