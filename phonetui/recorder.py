"""The run's files as a training writes them, each epoch: metrics, the best model and its
diagnostics, the status, and the training state for resume (as Lightning's checkpoint and logger
callbacks do). The loop decides; the recorder writes, in an order that a stop or a failure between
any two writes leaves readable (trainer._on_disk reconciles the status with the files)."""

from __future__ import annotations

from pathlib import Path

import torch

from . import checkpoint, diagnostics, noise
from .checkpoint import TrainingState
from .config import RunConfig, n_epochs
from .errors import PhonetuiError
from .events import EpochEnd, Listener
from .noise import Interval
from .runs import EpochMetrics, Run, StepPoint
from .step import Step
from .threads import Governor


class Recorder:
    """Owns `run`'s files while `step` trains it (gen: the batch order's generator)."""

    def __init__(self, run: Run, cfg: RunConfig, width: int, step: Step, gen: torch.Generator, gov: Governor) -> None:
        self.run, self.cfg, self.width, self.step, self.gen, self.gov = run, cfg, width, step, gen, gov
        self.history: list[EpochMetrics] = []
        self.best_counts: noise.Counts | None = None  # the best model's, for the next best's gain
        self.ran()

    def ran(self) -> None:
        """Keep the record of what runs true: a fallback found while training (or a resume on
        another device) changes the step, and an auto thread count follows the machine's load."""
        rec = self.step.record() | self.gov.record()
        if any(self.run.record.get(k) != v for k, v in rec.items()):
            self.run.update_record(**rec)

    def restore(self, saved: dict | None, listen: Listener) -> TrainingState:
        """A resumed run: the step and generators as last.pt kept them, its earlier epochs replayed
        from its record (EpochEnd, earlier=True). A new run: the start."""
        if not saved:
            return TrainingState()
        self.step.load_state_dict(saved)
        state = checkpoint.restore(saved, self.gen, self.step.device)
        self.history = self.run.metrics()[:state.epoch]
        try:
            self.best_counts = diagnostics.val_counts(self.run)
        except PhonetuiError:
            self.best_counts = None  # damaged: the next best model's gain goes without an interval
        self.run.keep_steps(state.epoch)  # the cut epoch's points go: it trains again
        for m in self.history:
            listen(EpochEnd(m, self.cfg.training.epochs, earlier=True))
        return state

    def point(self, p: StepPoint) -> None:
        self.run.add_step(p)

    def metrics(self, m: EpochMetrics) -> None:
        self.history.append(m)
        self.run.write_metrics(self.history)

    def gain(self, scores) -> Interval | None:
        """A new best model's val acc gain over the last best one: its 95% interval, paired over the
        validation utterances (None for the first, or a resumed run whose best predates the counts)."""
        if scores is None or scores.counts is None or self.best_counts is None:
            return None
        return noise.difference(scores.counts, self.best_counts)

    def best(self, epoch: int, val_acc: float | None, scores) -> Path:
        """The best model so far, with its per-phone diagnostics, per-utterance counts (and Viterbi
        setting) where validated."""
        path = checkpoint.save(self.run, self.step.model, self.cfg, self.width, epoch, val_acc,
                               scores.decoder if scores else None)
        if scores:
            diagnostics.write(self.run, scores.confusion, scores.counts)
            self.best_counts = scores.counts
        return path

    def epoch_done(self, state: TrainingState, improved: bool, val_acc: float | None) -> None:
        """The status, then last.pt: the epoch is over and resumable."""
        best = {"best_epoch": state.epoch, "best_val_acc": val_acc} if improved else {}
        self.run.write_status(epochs_done=state.epoch, **best)
        checkpoint.save_state(self.run, state, self.step.state_dict(), self.gen, self.step.device, self.width)

    def early(self, epoch: int) -> None:
        self.run.write_status(message=f"stopped early after epoch {epoch}: no val acc gain in "
                                      f"{n_epochs(self.cfg.training.patience)}")
