"""Predict the test set with a run's best model, or an ensemble of runs, and export the `Id,Class` CSV.

Each run's test posteriors (softmax, smoothed as the run smooths, under its precision) are cached
in its folder as float16 (`test_posteriors.npy`, with the data and model they came from in
`test_posteriors.json`; likewise its validation posteriors), so exporting the same run again, or
an ensemble with it, costs seconds. The CSV is the argmax of one run's posteriors or of the
members' weighted average (equal, or weights chosen on validation), or their Viterbi decode along
each utterance (phonetui.decode).
"""

from __future__ import annotations

import json
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import batches, checkpoint, runs
from .config import N_CLASSES
from .data import TEST_X, TRAIN_X, TimitData, utterances
from .decode import of_training, tune, viterbi
from .device import autocast, keep_freed_memory, resolve_device
from .errors import PhonetuiError, first_line, note
from .evaluation import posteriors, smooth
from .fileio import atomic_write, failed, read_text, write_text
from .runs import Run

POSTERIORS, POSTERIORS_KEY = "test_posteriors.npy", "test_posteriors.json"
VAL_POSTERIORS, VAL_POSTERIORS_KEY = "val_posteriors.npy", "val_posteriors.json"
CACHE = {"test": (POSTERIORS, POSTERIORS_KEY), "val": (VAL_POSTERIORS, VAL_POSTERIORS_KEY)}


@dataclass(frozen=True)
class Prediction:
    path: Path
    rows: int
    test_acc: float | None
    record: dict | None = None  # an ensemble's, as written to <csv>.json


def _rows(data: TimitData, split: str, n_train: int | None) -> tuple[str, np.ndarray, np.ndarray]:
    """(file, rows, utterance starts) of a split: the test file, or the training file's rows from n_train on."""
    if split == "test":
        return TEST_X, data.test_x, data.test_starts
    return TRAIN_X, data.train_x[n_train:], utterances.within(data.utterance_starts, n_train, len(data.train_x))


def _key(run: Run, data: TimitData, split: str, n_train: int | None) -> dict:
    """What a run's cached posteriors of a split depend on: its rows' file and the best model, as they are now."""
    file, x, _ = _rows(data, split, n_train)
    rows = (data.path / file).resolve()
    f, b = rows.stat(), (run.path / runs.CHECKPOINT).stat()
    key = {"file": str(rows), "size": f.st_size, "mtime_ns": f.st_mtime_ns, "rows": len(x),
           "model_size": b.st_size, "model_mtime_ns": b.st_mtime_ns}
    return key if split == "test" else key | {"train_rows": n_train}


def _model_posteriors(run: Run, data: TimitData, x: np.ndarray, starts: np.ndarray, device: str,
                      file: str):
    """Smoothed posteriors (torch, on the device) of the run's best model over rows x (utterances at
    starts) of the data's `file`."""
    dev = resolve_device(device)
    keep_freed_memory()
    model, cfg, width = checkpoint.load(run, dev)
    if width != data.width:
        raise PhonetuiError(f"{data.path / file}: width {data.width} but {run.id}'s model expects {width}")
    if cfg.sequence:
        utterances.check_ordered(starts, len(x), data.path / file)
    t = run.config.training
    probs, _ = posteriors(model, batches.source(cfg, x, None, starts, dev), dev,
                          autocast(t.precision, dev, t.batch_size).dtype)
    return smooth(probs, starts, t.smooth)


Say = Callable[[str], None]


def test_posteriors(run: Run, data: TimitData, device: str = "auto", say: Say = note) -> np.ndarray:
    """(test rows, 39) float16 posteriors of the run's best model, from its cache when that is current
    (a damaged cache is computed again, and `say` hears why)."""
    return _cached(run, data, "test", None, device, say)


def val_posteriors(run: Run, data: TimitData, n_train: int, device: str = "auto", say: Say = note) -> np.ndarray:
    """(validation rows, 39) float16 posteriors of the run's best model over the training file's rows
    from n_train on (its validation split), from its cache when that is current."""
    return _cached(run, data, "val", n_train, device, say)


SUM_TOLERANCE = 0.01  # a row of 39 float16 probabilities, each within 2^-12 of its value, sums to 1 within 39 * 2^-12


def cache_problem(path: Path, rows: int) -> tuple[np.ndarray | None, str]:
    """(the posteriors, "") from a cache file, or (None, why it cannot be used): it must be a regular
    .npy file (a FIFO would block the read) of (rows, 39) float16, finite, every value in [0, 1],
    every row summing to one within float16's rounding. Nothing in it is unpickled."""
    try:
        st = path.stat()
    except OSError as e:
        return None, f"cannot be read ({e.strerror or type(e).__name__})"
    if not stat.S_ISREG(st.st_mode):
        return None, "not a regular file"
    if st.st_size == 0:
        return None, "an empty file"
    try:
        probs = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        return None, f"not a readable .npy file: {first_line(e, 80)}"
    if not isinstance(probs, np.ndarray) or probs.shape != (rows, N_CLASSES) or probs.dtype != np.float16:
        return None, f"{getattr(probs, 'dtype', '?')} of shape {getattr(probs, 'shape', '?')}, not float16 ({rows}, 39)"
    values = probs.astype(np.float32)
    if not np.isfinite(values).all():
        return None, "values that are not finite (NaN or Inf)"
    if values.min(initial=0.0) < 0 or values.max(initial=0.0) > 1 + 2**-11:
        return None, "values outside [0, 1]"
    if rows and np.abs(values.sum(1) - 1).max() > SUM_TOLERANCE:
        return None, "rows that do not sum to one"
    return probs, ""


def _cached(run: Run, data: TimitData, split: str, n_train: int | None, device: str, say: Say) -> np.ndarray:
    cache, meta = run.path / CACHE[split][0], run.path / CACHE[split][1]
    try:
        key = _key(run, data, split, n_train)
    except OSError:
        key = None  # no best.pt (checkpoint.load says so below)
    try:
        current = key is not None and json.loads(read_text(meta)) == key
    except (PhonetuiError, ValueError):
        current = False  # no cache yet, or a stale or damaged record of it: compute it again
    if current and (cache.exists() or cache.is_symlink()):
        probs, why = cache_problem(cache, key["rows"])
        if probs is not None:
            return probs
        say(f"{cache}: damaged posterior cache ({why}); computing it again")
    file, x, starts = _rows(data, split, n_train)
    probs = _model_posteriors(run, data, x, starts, device, file).cpu().numpy().astype(np.float16)
    atomic_write(cache, lambda tmp: _save_npy(tmp, probs))
    write_text(meta, json.dumps(key) + "\n")
    return probs


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # np.save given a name would add ".npy" to the temp file's
        np.save(f, array)


def _write_csv(pred: np.ndarray, out: Path, follow_link: bool) -> Path:
    """Write the CSV; returns the file written. Where `out` is a symlink, `follow_link` writes the
    file it names (an --out the user named) and otherwise replaces the link with the file (a path
    inside a run folder, which someone else may have made: never a way to overwrite another file)."""
    if follow_link and out.is_symlink():
        out = out.resolve()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise failed(out.parent, "make the folder", e) from None
    table = np.column_stack([np.arange(len(pred)), pred])
    atomic_write(out, lambda tmp: np.savetxt(tmp, table, fmt="%d", delimiter=",", header="Id,Class", comments=""))
    return out


def _accuracy(pred: np.ndarray, data: TimitData) -> float | None:
    return float((pred == data.test_y).mean()) if data.test_y is not None else None


def predict(run: Run, data: TimitData, out: Path | None = None, device: str = "auto", say: Say = note) -> Prediction:
    """Classify every test row (taggers utterance by utterance) with the run's best model, write the
    CSV in row order atomically and note it in the run's prediction record (`out`: a file the user
    named, written through a symlink; by default the run's prediction.csv, a link there replaced)."""
    _not_training([run])
    probs = test_posteriors(run, data, device, say)
    decoder = checkpoint.decoder(run) if run.config.training.decode == "viterbi" else None
    if decoder is not None:  # decoded as the run validated: its transitions, the setting saved with its best model
        pred = _decode_test(probs, data, _transitions([run], data), decoder)
    else:
        pred = probs.argmax(1)
    named, out = out is not None, out or run.path / runs.PREDICTION
    acc = _accuracy(pred, data)
    runs.record_prediction(run, _write_csv(pred, out, follow_link=named), acc)
    return Prediction(out, len(pred), acc)


def _not_training(members: list[Run]) -> None:
    """Refuse runs still training (their best model can change under the prediction), and imported
    ones (they have none)."""
    for r in members:
        r.refuse_if_imported("predict")
        if r.state == "running":
            raise PhonetuiError(f"{r.path}: still training (pid {r.status.pid}): wait for it to finish, or stop it "
                                "(its best model is kept), then predict")


def _transitions(members: list[Run], data: TimitData):
    """log P(next | previous) from the training labels of the rows every member trained on."""
    n = [r.info.train_rows for r in members]
    return of_training(data, min(n) if all(isinstance(v, int) for v in n) else len(data.train_x))


def _decode_test(probs: np.ndarray, data: TimitData, trans, decoder: tuple[float, float]) -> np.ndarray:
    return viterbi(torch.from_numpy(np.asarray(probs, np.float32)), data.test_starts, trans, *decoder).numpy()


def _shared_split(members: list[Run], data: TimitData, why: str) -> int:
    """The first row of the validation rows every member left out of its training: from the first
    utterance that starts at or after the latest member's validation split (frame MLPs split by
    rows, taggers by utterances), or a PhonetuiError: `why` (a flag) needs such rows to tune on."""
    n_trains = [r.info.train_rows for r in members]
    if not all(isinstance(n, int) for n in n_trains):
        raise PhonetuiError(f"predict {why}: a run does not record its validation split")
    here = str(data.path.resolve())
    for r in members:  # a split is rows of the file a run trained on: of other data, it may be rows it trained on here
        if r.info.data != here:
            raise PhonetuiError(f"predict {why}: {r.id} trained on {str(r.info.data)[:200]}, not {here}: "
                                "its validation rows are not rows of this data, so tuning here could use rows it "
                                "trained on (export with equal weights and argmax, or use the data it trained on)")
    starts = np.asarray(data.utterance_starts)
    later = starts[starts >= max(n_trains)]
    if not len(later):
        raise PhonetuiError(f"predict {why}: the runs share no validation rows to tune on (val_ratio 0)")
    return int(later[0])


def val_weights(val: list[np.ndarray], y: np.ndarray, rounds: int = 200) -> np.ndarray:
    """Mixture weights (on the simplex) that minimise the validation log loss of the members' averaged
    posteriors `val`, by EM from equal weights: each round sets a member's weight to its mean share
    of the mixture's probability of the true class (the loss never rises; equal members stay equal)."""
    right = np.stack([v[np.arange(len(y)), y] for v in val]).astype(np.float64)  # (members, rows)
    w = np.full(len(val), 1 / len(val))
    for _ in range(rounds):
        share = w[:, None] * right
        w = (share / np.maximum(share.sum(0), 1e-12)).mean(1)
    return w / w.sum()


def predict_ensemble(members: list[Run], data: TimitData, out: Path, device: str = "auto",
                     decode: str = "argmax", weights: str = "equal", follow_link: bool = True,
                     say: Say = note) -> Prediction:
    """The members' posteriors averaged (frame MLPs and taggers alike, each with its own smoothing
    and precision), one CSV, and `<out>.json` recording the ensemble. `weights = "val"` weighs the
    members by their validation split (val_weights), never the test set; `decode = "viterbi"`
    decodes along the utterances (transitions from the training labels, scale and duration term
    tuned on the validation split) instead of taking each frame's argmax."""
    if len({r.path.resolve() for r in members}) != len(members):
        raise PhonetuiError("predict: a run is named twice in the ensemble")
    _not_training(members)
    w = np.full(len(members), 1 / len(members))
    how: dict = {"decode": decode, "weights_from": weights}
    if weights == "val" or decode == "viterbi":
        n_train = _shared_split(members, data, "--weights val" if weights == "val" else "--decode viterbi")
        val = [val_posteriors(r, data, n_train, device, say).astype(np.float32) for r in members]
        y_val = data.train_y[n_train:]
        if weights == "val":
            w = val_weights(val, y_val)
        val_mix = sum(wi * v for wi, v in zip(w, val))
        how |= {"val_from_row": n_train, "val_acc_argmax": float((val_mix.argmax(1) == y_val).mean())}
    test_mix = sum(wi * test_posteriors(r, data, device, say).astype(np.float32) for wi, r in zip(w, members))
    if decode == "viterbi":
        trans = _transitions(members, data)
        val_starts = _rows(data, "val", n_train)[2]
        scale, loop, how["val_acc"] = tune(torch.from_numpy(val_mix), torch.from_numpy(y_val), val_starts, trans)
        how |= {"scale": scale, "loop": loop}
        pred = _decode_test(test_mix, data, trans, (scale, loop))
    else:
        pred = test_mix.argmax(1)
    _write_csv(pred, out, follow_link)
    acc = _accuracy(pred, data)
    record = {"members": [{"run": r.id, "path": str(r.path.resolve()), "weight": float(wi)} for wi, r in zip(w, members)],
              "csv": str(out.resolve()), "test_acc": acc, **how, "written": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_text(out.with_suffix(".json"), json.dumps(record, indent=1) + "\n")
    return Prediction(out, len(pred), acc, record)
