"""Per-phone diagnostics of a run's best model: accuracy by class and the most confused pairs.

    runs/<id>/per_phone.csv   class, phone, frames, correct, accuracy (validation frames of each class)
    runs/<id>/confusions.csv  true, predicted, frames, share (of the true class's frames), worst first
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np

from .config import PHONES
from .errors import PhonetuiError
from .fileio import read_text, write_text
from .runs import Run

PER_PHONE, CONFUSIONS = "per_phone.csv", "confusions.csv"
TOP_PAIRS = 20


@dataclass(frozen=True)
class PhoneScore:
    phone: str
    frames: int
    accuracy: float | None


@dataclass(frozen=True)
class Confusion:
    true: str
    predicted: str
    frames: int
    share: float


def _csv(rows: list[list]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def write(run: Run, confusion: np.ndarray) -> None:
    """Write both files from a (39, 39) true x predicted count matrix."""
    frames = confusion.sum(1)
    correct = np.diag(confusion)
    rows = [["class", "phone", "frames", "correct", "accuracy"]]
    rows += [[c, PHONES[c], int(frames[c]), int(correct[c]), f"{correct[c] / frames[c]:.6f}" if frames[c] else ""]
             for c in range(len(PHONES))]
    write_text(run.path / PER_PHONE, _csv(rows))
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(off, axis=None, kind="stable")[::-1][:TOP_PAIRS]
    pairs = [["true", "predicted", "frames", "share"]]
    for flat in order:
        t, p = divmod(int(flat), len(PHONES))
        if off[t, p]:
            pairs.append([PHONES[t], PHONES[p], int(off[t, p]), f"{off[t, p] / frames[t]:.6f}"])
    write_text(run.path / CONFUSIONS, _csv(pairs))


def read(run: Run) -> tuple[list[PhoneScore], list[Confusion]]:
    """Both files read back (empty lists before the first validated epoch)."""
    if not (run.path / PER_PHONE).exists():
        return [], []
    phone_rows = csv.DictReader(io.StringIO(read_text(run.path / PER_PHONE)))
    pair_rows = csv.DictReader(io.StringIO(read_text(run.path / CONFUSIONS)))
    try:
        phones = [PhoneScore(r["phone"], int(r["frames"]), float(r["accuracy"]) if r["accuracy"] else None)
                  for r in phone_rows]
        pairs = [Confusion(r["true"], r["predicted"], int(r["frames"]), float(r["share"])) for r in pair_rows]
    except (KeyError, ValueError, TypeError) as e:
        raise PhonetuiError(f"{run.path}: malformed diagnostics ({e})") from None
    return phones, pairs
