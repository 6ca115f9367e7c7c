"""Signal or noise: 95% intervals for validation accuracy, by bootstrap over utterances.

The frames of one utterance are strongly correlated (neighbours share 10 of their 11 frames), so
resampling frames would overstate the certainty many times over; the unit resampled here is the
utterance (or, where utterances cannot be rebuilt, a contiguous block of frames). A model's
per-utterance counts (`Counts`: frames and correct frames of each validation utterance) are kept
with its best model (runs/<id>/val_utterances.csv); two models scored on the same utterances are
compared by a paired bootstrap (the same resampled utterances for both), which is far tighter than
two separate intervals because most of the variation is in which utterances are hard.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000  # bootstrap resamples: the interval's ends move by about 0.0002 from one seed to another
BLOCK = 300  # frames in a block where utterances cannot be rebuilt (about one TIMIT utterance)
SEED = 0  # fixed: the same counts give the same interval every time


@dataclass(frozen=True)
class Counts:
    """Frames and correct frames of each validation utterance, in order."""

    frames: np.ndarray  # int64 (U,)
    correct: np.ndarray  # int64 (U,)

    @property
    def acc(self) -> float:
        return float(self.correct.sum() / max(self.frames.sum(), 1))

    def same_split(self, other: Counts) -> bool:
        """Scored on the same utterances (so a paired comparison holds)."""
        return len(self.frames) == len(other.frames) and bool(np.array_equal(self.frames, other.frames))


def counts(hits: np.ndarray, starts: np.ndarray) -> Counts:
    """Per-utterance counts from per-frame hits (bool) and the utterances' first rows (from 0);
    contiguous blocks of BLOCK frames where the starts say nothing (none, or one for many frames)."""
    n = len(hits)
    starts = np.asarray(starts, np.int64)
    if len(starts) < 2 or starts[0] != 0:
        starts = np.arange(0, n, BLOCK, dtype=np.int64)
    if n == 0:
        return Counts(np.zeros(0, np.int64), np.zeros(0, np.int64))
    correct = np.add.reduceat(hits.astype(np.int64), starts)
    frames = np.diff(np.append(starts, n))
    return Counts(frames.astype(np.int64), correct.astype(np.int64))


@dataclass(frozen=True)
class Interval:
    value: float
    lo: float
    hi: float

    @property
    def half(self) -> float:
        return (self.hi - self.lo) / 2

    @property
    def beyond_noise(self) -> bool:
        """For a difference: its interval leaves out 0."""
        return self.lo > 0 or self.hi < 0

    @property
    def verdict(self) -> str:
        """For a difference: 'beyond noise' or 'within noise'."""
        return "beyond noise" if self.beyond_noise else "within noise"

    def pts(self) -> str:
        """In percentage points, e.g. '+0.14 (-0.10 to +0.38) pts'."""
        return f"{self.value * 100:+.2f} ({self.lo * 100:+.2f} to {self.hi * 100:+.2f}) pts"


def _resamples(u: int) -> np.ndarray:
    return np.random.default_rng(SEED).integers(0, u, size=(RESAMPLES, u))


def interval(c: Counts) -> Interval | None:
    """The 95% interval of the accuracy (percentile bootstrap over utterances); None under 2 utterances."""
    if len(c.frames) < 2:
        return None
    idx = _resamples(len(c.frames))
    accs = c.correct[idx].sum(1) / np.maximum(c.frames[idx].sum(1), 1)
    lo, hi = np.percentile(accs, [2.5, 97.5])
    return Interval(c.acc, float(lo), float(hi))


def difference(a: Counts, b: Counts) -> Interval | None:
    """The 95% interval of acc(a) - acc(b): paired where both were scored on the same utterances,
    else each resampled on its own. None where either has under 2 utterances."""
    if len(a.frames) < 2 or len(b.frames) < 2:
        return None
    if a.same_split(b):
        idx = _resamples(len(a.frames))
        diffs = (a.correct[idx].sum(1) - b.correct[idx].sum(1)) / np.maximum(a.frames[idx].sum(1), 1)
    else:
        ia, ib = _resamples(len(a.frames)), np.random.default_rng(SEED + 1).integers(0, len(b.frames),
                                                                                   size=(RESAMPLES, len(b.frames)))
        diffs = (a.correct[ia].sum(1) / np.maximum(a.frames[ia].sum(1), 1)
                 - b.correct[ib].sum(1) / np.maximum(b.frames[ib].sum(1), 1))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return Interval(a.acc - b.acc, float(lo), float(hi))


def verdict(d: Interval | None) -> str:
    """'beyond noise', 'within noise', or '-' where it cannot be told."""
    return "-" if d is None else d.verdict
