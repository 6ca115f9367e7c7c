"""What the curves say: findings about a run from its epochs, each with the evidence in numbers and
a next change to try. A pure function of the numbers (the epochs, the points inside them, the val
acc's interval where the run kept its per-utterance counts), so a finished run, a run in progress
and a notebook run imported from its log are read alike.

The noise a change is judged against is the run's own: the val accuracy's epoch-to-epoch jitter,
taken robustly from its first differences (1.4826 x their median absolute deviation / sqrt 2: a
steady trend cancels out, and one jump does not swell it). A gain under twice that jitter is noise.

Thresholds, and why:
- overfitting: val loss at its lowest at least OVERFIT_EPOCHS (3) epochs before the end and risen
  since by more than twice its own jitter, while train loss went on falling. One or two rising
  epochs happen by chance; three with the train loss falling are the textbook sign.
- still-improving: the val accuracy's least-squares slope over the last epochs (at least 5, or the
  last half) is positive with t > 2 (about 95% one-sided), and the best epoch is among the last two;
  or, with fewer epochs, the last epoch's gain is beyond noise (its paired 95% interval leaves out 0).
- lr-too-low: after LATE_EPOCH (30) epochs the train loss still falls steadily (t < -5) but by under
  SLOW_RATE (0.5%) of itself an epoch. A well-set Adam run makes most of its progress in its first
  epochs; a slow steady creep that late means the steps are too small.
- lr-too-high: a loss that is not finite; a train loss over 1.5x that of guessing (ln 39 = 3.66);
  one that jumps to 1.5x its lowest so far (epoch by epoch, and inside the epochs from steps.csv);
  or one that ends above where it began.
- plateau: the last PLATEAU_EPOCHS (5) epochs add no val accuracy beyond twice the jitter over the
  best before them (and the run is not still improving or creeping on too low an lr).
- noisy-validation: the best model's 95% interval (bootstrap over utterances) is wider than the
  whole spread of val accuracy over the last epochs: the validation split cannot tell them apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import N_CLASSES

if TYPE_CHECKING:
    from .noise import Interval
    from .runs import EpochMetrics, StepPoint

OVERFIT_EPOCHS = 3
TREND_EPOCHS = 5
LATE_EPOCH = 30
SLOW_RATE = 0.005
PLATEAU_EPOCHS = 5
JUMP = 1.5


class FindingId(StrEnum):
    OVERFITTING = "overfitting"
    STILL_IMPROVING = "still-improving"
    LR_TOO_LOW = "lr-too-low"
    LR_TOO_HIGH = "lr-too-high"
    PLATEAU = "plateau"
    NOISY_VALIDATION = "noisy-validation"


@dataclass(frozen=True)
class Finding:
    id: FindingId
    evidence: str  # what the numbers show, in one line
    suggestion: str  # the next change, in words
    change: dict[str, Any] = field(default_factory=dict)  # form fields -> values: the suggestion, ready to apply

    def line(self) -> str:
        return f"{self.id}: {self.evidence}; {self.suggestion}"


def jitter(values: list[float]) -> float:
    """The epoch-to-epoch noise of a series: robust, trend-free (see the module's docstring)."""
    d = np.diff(np.asarray(values, float))
    if len(d) < 2:
        return 0.0
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2))


def _slope(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """(least-squares slope, its t statistic); t is inf for a perfect line, 0 under 3 points."""
    if len(xs) < 3:
        return 0.0, 0.0
    x, y = np.asarray(xs, float), np.asarray(ys, float)
    xc = x - x.mean()
    b = float((xc * (y - y.mean())).sum() / (xc**2).sum())
    resid = y - y.mean() - b * xc
    se = math.sqrt(float((resid**2).sum()) / (len(x) - 2) / float((xc**2).sum()))
    return b, (b / se if se > 0 else math.copysign(math.inf, b) if b else 0.0)


def _pts(v: float) -> str:
    return f"{v * 100:+.2f} pts"


def diagnose(metrics: list[EpochMetrics], steps: list[StepPoint] | None = None, epochs: int | None = None,
             lr: float | None = None, val_ratio: float | None = None, interval: Interval | None = None) -> list[Finding]:
    """The findings for a run's epochs (in order; a partial log's too), worst first. `epochs`: the run's
    planned total; `lr`, `val_ratio`: its settings (for the changes); `interval`: its best model's
    val acc interval."""
    if not metrics:
        return []
    found = [f for f in (_too_high(metrics, steps or [], lr),) if f]
    if found:
        return found  # a diverging run says nothing reliable about anything else
    vals = [m for m in metrics if m.val_acc is not None and m.val_loss is not None]
    over = _overfitting(metrics, vals)
    improving = _still_improving(vals, epochs)
    low = None if over else _too_low(metrics, lr)
    found = [f for f in (over, low, improving) if f]
    if not improving and not low and (flat := _plateau(vals, lr)):
        found.append(flat)
    if noisy := _noisy(vals, interval, val_ratio):
        found.append(noisy)
    return found


def _too_high(metrics: list[EpochMetrics], steps: list[StepPoint], lr: float | None) -> Finding | None:
    change = {"lr": lr * 0.3} if lr else {}
    suggestion = "lower the lr (x0.3)" + (f": {lr * 0.3:.3g}" if lr else "")
    losses = [(m.epoch, v) for m in metrics for v in (m.train_loss, m.val_loss) if v is not None]
    losses += [(p.epoch, p.train_loss) for p in steps]
    if bad := next((e for e, v in losses if not math.isfinite(v)), None):
        return Finding(FindingId.LR_TOO_HIGH, f"the loss is not a number (NaN or inf) at epoch {bad}", suggestion, change)
    guessing = math.log(N_CLASSES)  # the loss of a model that knows nothing (uniform over 39 phones)
    if blown := next((m for m in metrics if m.train_loss > JUMP * guessing), None):
        return Finding(FindingId.LR_TOO_HIGH, f"train loss {blown.train_loss:.4f} at epoch {blown.epoch}, far above the "
                       f"{guessing:.2f} of guessing: the steps overshoot", suggestion, change)
    for where, seq in (("epoch", [(m.epoch, m.train_loss) for m in metrics]),
                       ("inside epoch", [(p.epoch, p.train_loss) for p in steps])):
        low = math.inf
        for epoch, loss in seq:
            if loss > JUMP * low and loss > 1.0:  # (a small loss doubling is noise of a nearly fitted model)
                return Finding(FindingId.LR_TOO_HIGH, f"train loss jumped to {loss:.4f} {where} {epoch} from {low:.4f} "
                               "before", suggestion, change)
            low = min(low, loss)
    if len(metrics) >= 3 and metrics[-1].train_loss > metrics[0].train_loss:
        return Finding(FindingId.LR_TOO_HIGH, f"train loss ends above where it began ({metrics[0].train_loss:.4f} at "
                       f"epoch {metrics[0].epoch}, {metrics[-1].train_loss:.4f} at {metrics[-1].epoch})", suggestion, change)
    return None


def _overfitting(metrics: list[EpochMetrics], vals: list[EpochMetrics]) -> Finding | None:
    if len(vals) < OVERFIT_EPOCHS + 2:
        return None
    losses = [m.val_loss for m in vals]
    i = int(np.argmin(losses))
    low, last = vals[i], vals[-1]
    rise = last.val_loss - low.val_loss
    if len(vals) - 1 - i < OVERFIT_EPOCHS or rise <= 2 * jitter(losses) or last.train_loss >= low.train_loss:
        return None
    best = max(vals, key=lambda m: m.val_acc)
    return Finding(FindingId.OVERFITTING,
                   f"val loss has risen since epoch {low.epoch + 1} ({low.val_loss:.4f} -> {last.val_loss:.4f}) while "
                   f"train loss fell ({low.train_loss:.4f} -> {last.train_loss:.4f}); the best val acc is "
                   f"{best.val_acc:.4f} at epoch {best.epoch}",
                   f"keep epoch {best.epoch}'s model and stop there (patience 3 ends such a run); for more than it "
                   "gave, regularise: dropout, weight decay, or a smaller model",
                   {"patience": 3})


def _still_improving(vals: list[EpochMetrics], epochs: int | None) -> Finding | None:
    if len(vals) < 2:
        return None
    tail = vals[-max(TREND_EPOCHS, len(vals) // 2):]
    b, t = _slope([m.epoch for m in tail], [m.val_acc for m in tail])
    best = max(vals, key=lambda m: m.val_acc)
    last = vals[-1]
    if len(vals) >= TREND_EPOCHS and b > 0 and t > 2 and best.epoch >= vals[-2].epoch:
        evidence = f"val acc still climbs {_pts(b)} an epoch over epochs {tail[0].epoch}-{last.epoch} (t = {t:.1f}), " \
                   f"best at epoch {best.epoch}"
    elif last.gain_lo is not None and last.gain_lo > 0 and last.gain_hi is not None:  # too few epochs for a slope,
        # but the last one's gain is beyond noise (paired over the validation utterances)
        b = last.val_acc - max(m.val_acc for m in vals[:-1])
        evidence = f"the last epoch ({last.epoch}) gained {_pts(b)} over the best before it, beyond noise (95%: " \
                   f"{last.gain_lo * 100:+.2f} to {last.gain_hi * 100:+.2f} pts)"
    else:
        return None
    headroom, last = 1.0 - best.val_acc, last.epoch

    def gain(n: int) -> str:  # the slope carried on, never past 100%
        return f"would add up to {_pts(min(b * n, headroom))} at this slope (an upper bound: curves flatten)"

    if epochs and epochs > last:  # a run in progress, or a log that stops before the run did
        return Finding(FindingId.STILL_IMPROVING, evidence, f"let it run: its {epochs - last} epochs to come {gain(epochs - last)}")
    more = max(last, 10)
    return Finding(FindingId.STILL_IMPROVING, evidence, f"train longer: {more} more epochs {gain(more)}",
                   {"epochs": last + more})


def _too_low(metrics: list[EpochMetrics], lr: float | None) -> Finding | None:
    tail = metrics[-max(TREND_EPOCHS, len(metrics) // 2):]
    if metrics[-1].epoch < LATE_EPOCH or len(tail) < TREND_EPOCHS:
        return None
    b, t = _slope([m.epoch for m in tail], [m.train_loss for m in tail])
    rate = -b / max(tail[-1].train_loss, 1e-12)
    if t >= -5 or rate >= SLOW_RATE:
        return None
    factor = 10 if rate < SLOW_RATE / 2 else 3
    return Finding(FindingId.LR_TOO_LOW,
                   f"after {metrics[-1].epoch} epochs train loss still falls steadily but slowly: {rate:.2%} an epoch "
                   f"over epochs {tail[0].epoch}-{tail[-1].epoch} (t = {t:.0f})",
                   f"raise the lr x{factor}" + (f": {lr * factor:.3g}" if lr else "") + " and train fewer epochs",
                   {"lr": lr * factor} if lr else {})


def _plateau(vals: list[EpochMetrics], lr: float | None) -> Finding | None:
    if len(vals) < PLATEAU_EPOCHS + 2:
        return None
    before, last = vals[:-PLATEAU_EPOCHS], vals[-PLATEAU_EPOCHS:]
    best_before = max(before, key=lambda m: m.val_acc)
    best_last = max(last, key=lambda m: m.val_acc)
    gain, noise = best_last.val_acc - best_before.val_acc, 2 * jitter([m.val_acc for m in vals])
    if gain > noise:
        return None
    saves = [(m, prev) for prev, m in _saves(vals)]
    last_save = (f"; the last 'saving model' (epoch {saves[-1][0].epoch}, {_pts(saves[-1][0].val_acc - saves[-1][1])}) "
                 "was within noise, not progress") if saves and saves[-1][0].val_acc - saves[-1][1] <= noise else ""
    return Finding(FindingId.PLATEAU,
                   f"no val acc gain beyond noise in the last {PLATEAU_EPOCHS} epochs: best {best_last.val_acc:.4f} "
                   f"(epoch {best_last.epoch}) against {best_before.val_acc:.4f} (epoch {best_before.epoch}) before, "
                   f"{_pts(gain)} with noise +-{noise * 100:.2f} pts{last_save}",
                   "more epochs of the same will not help: stop here (patience), or lower the lr (x0.3) to settle",
                   {"lr": lr * 0.3} if lr else {"patience": PLATEAU_EPOCHS})


def _saves(vals: list[EpochMetrics]):
    """(val acc of the best before, the epoch) for each epoch that saved a new best model after the first."""
    best = None
    for m in vals:
        if best is not None and m.val_acc > best:
            yield best, m
        best = m.val_acc if best is None else max(best, m.val_acc)


def _noisy(vals: list[EpochMetrics], interval: Interval | None, val_ratio: float | None) -> Finding | None:
    if interval is None or len(vals) < 3:
        return None
    tail = [m.val_acc for m in vals[-TREND_EPOCHS:]]
    spread = max(tail) - min(tail)
    if 2 * interval.half <= spread:
        return None
    ratio = round(min(0.5, (val_ratio or 0.2) * 1.5), 2)
    return Finding(FindingId.NOISY_VALIDATION,
                   f"the best model's 95% interval ({interval.lo:.4f}-{interval.hi:.4f}, over validation utterances) "
                   f"is wider than the last epochs' whole spread ({spread * 100:.2f} pts): they cannot be told apart",
                   f"validate on more utterances: VAL_RATIO {val_ratio or 0.2:g} -> {ratio:g} narrows the interval about "
                   f"{math.sqrt(ratio / (val_ratio or 0.2)):.2f}x",
                   {"val_ratio": ratio})


def interval_of(run) -> Interval | None:
    """The 95% interval of a run's best model's val acc, from its per-utterance counts (None without
    them, or where they are damaged)."""
    from . import diagnostics, noise
    from .errors import PhonetuiError

    try:
        counts = diagnostics.val_counts(run)
    except PhonetuiError:
        return None
    return noise.interval(counts) if counts else None


def of_run(run, metrics: list[EpochMetrics] | None = None, steps: list[StepPoint] | None = None,
           interval: Interval | None = None) -> list[Finding]:
    """The findings for a run with its settings: its epochs, the points inside them and its best
    model's interval as the caller holds them, each read from its folder where not given; none
    where its metrics cannot be read."""
    from .errors import PhonetuiError

    t = run.config.training
    try:
        metrics = run.metrics() if metrics is None else metrics
    except PhonetuiError:
        return []
    try:
        steps = run.steps() if steps is None else steps
    except PhonetuiError:
        steps = []
    return diagnose(metrics, steps, t.epochs, t.lr, t.val_ratio, interval or interval_of(run))
