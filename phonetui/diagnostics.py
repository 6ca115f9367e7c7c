"""Per-phone diagnostics of a run's best model: accuracy by class and the most confused pairs.

    runs/<id>/per_phone.csv   class, phone, frames, correct, accuracy (validation frames of each class)
    runs/<id>/confusions.csv  true, predicted, frames, share (of the true class's frames), worst first
    runs/<id>/confusion.csv   the whole 39x39 matrix: a row a true phone, a column a predicted one (frames)
    runs/<id>/val_utterances.csv  frames, correct: each validation utterance (noise: its 95% interval)
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np

from . import noise
from .config import PHONES
from .errors import PhonetuiError
from .fileio import read_text, write_text
from .runs import Run

PER_PHONE, CONFUSIONS, MATRIX, VAL_COUNTS = "per_phone.csv", "confusions.csv", "confusion.csv", "val_utterances.csv"
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


def write(run: Run, confusion: np.ndarray, counts: noise.Counts | None = None) -> None:
    """Write the files from a (39, 39) true x predicted count matrix, and the per-utterance counts."""
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
    write_text(run.path / MATRIX, _csv([["true", *PHONES]] + [[PHONES[t], *map(int, confusion[t])] for t in range(len(PHONES))]))
    if counts is not None:
        write_text(run.path / VAL_COUNTS, _csv([["frames", "correct"], *zip(counts.frames.tolist(), counts.correct.tolist())]))


def matrix(run: Run) -> np.ndarray | None:
    """The best model's whole confusion matrix (None for runs before it was kept)."""
    path = run.path / MATRIX
    if not path.exists():
        return None
    rows = list(csv.reader(io.StringIO(read_text(path))))
    try:
        m = np.array([[int(v) for v in r[1:]] for r in rows[1:]], np.int64)
    except (ValueError, IndexError) as e:
        raise PhonetuiError(f"{path}: malformed matrix ({e})") from None
    if m.shape != (len(PHONES), len(PHONES)) or (m < 0).any():
        raise PhonetuiError(f"{path}: not a {len(PHONES)}x{len(PHONES)} matrix of frame counts")
    return m


def val_counts(run: Run) -> noise.Counts | None:
    """The best model's per-utterance validation counts (None for runs before they were kept)."""
    path = run.path / VAL_COUNTS
    if not path.exists():
        return None
    try:
        rows = np.array([[int(v) for v in r] for r in list(csv.reader(io.StringIO(read_text(path))))[1:]], np.int64)
    except ValueError as e:
        raise PhonetuiError(f"{path}: malformed counts ({e})") from None
    if rows.ndim != 2 or rows.shape[1:] != (2,) or (rows < 0).any() or (rows[:, 1] > rows[:, 0]).any():
        raise PhonetuiError(f"{path}: not rows of frames,correct with 0 <= correct <= frames")
    return noise.Counts(rows[:, 0], rows[:, 1])


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


def versus_best(runs: list[Run], read: dict[str, noise.Counts | None] | None = None) -> dict[str, str]:
    """Each run's best model against the best run's (by run id): 'best', or the val acc difference
    with its 95% interval and whether it is beyond noise (paired where both share a validation
    split), or '-' where a run kept no per-utterance counts (imported, or from before they were).
    `read`: the runs' counts where the caller has read them already (by run id)."""
    counts: dict[str, noise.Counts] = {}
    for r in runs:
        try:
            if (c := read[r.id] if read is not None and r.id in read else val_counts(r)) is not None:
                counts[r.id] = c
        except PhonetuiError:
            pass  # damaged: said '-', like a run without counts
    if not counts:
        return {r.id: "-" for r in runs}
    best = max(counts, key=lambda k: counts[k].acc)
    out = {}
    for r in runs:
        d = noise.difference(counts[r.id], counts[best]) if r.id in counts and r.id != best else None
        out[r.id] = "best" if r.id == best else "-" if d is None else f"{d.pts()}, {d.verdict}"
    return out


def versus_best_at(paths: list) -> dict:
    """versus_best for the runs at `paths` (a leaderboard's; None: no run yet) that this machine can
    read, by path: another machine's run folder, or a damaged one, is left out ('-')."""
    from .runs import open_run

    opened = {}
    for path in paths:
        try:
            if path is not None:
                opened[path] = open_run(path)
        except PhonetuiError:
            pass
    vs = versus_best(list(opened.values()))
    return {path: vs[run.id] for path, run in opened.items()}
