"""Predict the test set with a run's best model, or an ensemble of runs, and export the `Id,Class` CSV.

Each run's test posteriors (softmax, smoothed as the run smooths, under its precision) are cached
in its folder as float16 (`test_posteriors.npy`, with the data and model they came from in
`test_posteriors.json`), so exporting the same run again, or an ensemble with it, costs seconds.
The CSV is the argmax of those posteriors: of one run's, or of the members' average.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import batches, checkpoint, runs
from .config import N_CLASSES
from .data import TEST_X, TimitData, utterances
from .device import keep_freed_memory, resolve_device, use_bf16
from .errors import PhonetuiError
from .evaluation import posteriors, smooth
from .fileio import atomic_write, failed, read_text, write_text
from .runs import Run

POSTERIORS, POSTERIORS_KEY = "test_posteriors.npy", "test_posteriors.json"


@dataclass(frozen=True)
class Prediction:
    path: Path
    rows: int
    test_acc: float | None


def _key(run: Run, data: TimitData) -> dict:
    """What a run's cached posteriors depend on: the test file and the best model, as they are now."""
    test, best = (data.path / TEST_X).resolve(), run.path / runs.CHECKPOINT
    t, b = test.stat(), best.stat()
    return {"test": str(test), "test_size": t.st_size, "test_mtime_ns": t.st_mtime_ns, "rows": len(data.test_x),
            "model_size": b.st_size, "model_mtime_ns": b.st_mtime_ns}


def _model_posteriors(run: Run, data: TimitData, x: np.ndarray, starts: np.ndarray, device: str):
    """Smoothed posteriors (torch, on the device) of the run's best model over rows x (utterances at starts)."""
    dev = resolve_device(device)
    keep_freed_memory()
    model, cfg, width = checkpoint.load(run, dev)
    if width != data.width:
        raise PhonetuiError(f"{data.path / TEST_X}: width {data.width} but {run.id}'s model expects {width}")
    if cfg.sequence:
        utterances.check_ordered(starts, len(x), data.path / TEST_X)
    t = run.config.training
    probs, _ = posteriors(model, batches.source(cfg, x, None, starts, dev), dev, use_bf16(t.precision, dev, t.batch_size))
    return smooth(probs, starts, t.smooth)


def test_posteriors(run: Run, data: TimitData, device: str = "auto") -> np.ndarray:
    """(test rows, 39) float16 posteriors of the run's best model, from its cache when that is current."""
    cache, meta = run.path / POSTERIORS, run.path / POSTERIORS_KEY
    try:
        key = _key(run, data)
    except OSError:
        key = None  # no best.pt (checkpoint.load says so below)
    try:
        if key and json.loads(read_text(meta)) == key:
            probs = np.load(cache)
            if probs.shape == (len(data.test_x), N_CLASSES) and probs.dtype == np.float16:
                return probs
    except (PhonetuiError, OSError, ValueError):
        pass  # no cache yet, or a stale or damaged one: compute it again
    probs = _model_posteriors(run, data, data.test_x, data.test_starts, device).cpu().numpy().astype(np.float16)
    atomic_write(cache, lambda tmp: _save_npy(tmp, probs))
    write_text(meta, json.dumps(key) + "\n")
    return probs


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # np.save given a name would add ".npy" to the temp file's
        np.save(f, array)


def _write_csv(pred: np.ndarray, out: Path) -> Path:
    """Write the CSV; returns the file written (a symlink's target)."""
    if out.is_symlink():  # write through the link (to the file it names), never replace the link itself
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


def predict(run: Run, data: TimitData, out: Path | None = None, device: str = "auto") -> Prediction:
    """Classify every test row (taggers utterance by utterance) with the run's best model, write the
    CSV in row order atomically and note it in the run's prediction record."""
    probs = test_posteriors(run, data, device)
    scale = checkpoint.decode_scale(run) if run.config.training.decode == "viterbi" else None
    if scale is not None:  # decoded as the run validated: its transitions, the scale saved with its best model
        pred = _decode_test(probs, data, _transitions(run, data), scale)
    else:
        pred = probs.argmax(1)
    out = out or run.path / runs.PREDICTION
    acc = _accuracy(pred, data)
    runs.record_prediction(run, _write_csv(pred, out), acc)
    return Prediction(out, len(pred), acc)


def _transitions(run: Run, data: TimitData):
    """log P(next | previous) from the training labels of the run's training split."""
    from . import decode

    n = run.record.get("train_rows")
    return decode.of_training(data, n if isinstance(n, int) else len(data.train_x))


def _decode_test(probs: np.ndarray, data: TimitData, trans, scale: float) -> np.ndarray:
    from . import decode

    return decode.viterbi(torch.from_numpy(np.asarray(probs, np.float32)), data.test_starts, trans, scale).numpy()


def _viterbi(members: list[Run], data: TimitData, test: np.ndarray, device: str) -> tuple[np.ndarray, dict]:
    """The test rows decoded along their utterances (phonetui.decode): transitions from the training
    labels, the scale tuned on the validation split the members share."""
    from . import decode

    n_train = members[0].record.get("train_rows")
    if any(r.record.get("train_rows") != n_train for r in members) or not isinstance(n_train, int):
        raise PhonetuiError("predict --decode viterbi: the runs do not share one validation split to tune on")
    if n_train >= len(data.train_x):
        raise PhonetuiError("predict --decode viterbi: the runs have no validation split to tune on (val_ratio 0)")
    trans = _transitions(members[0], data)
    val_starts = utterances.within(data.utterance_starts, n_train, len(data.train_x))
    val = sum(_model_posteriors(r, data, data.train_x[n_train:], val_starts, device).cpu() for r in members)
    scale, val_acc = decode.tune(val, torch.from_numpy(data.train_y[n_train:]), val_starts, trans)
    raw_acc = float((val.argmax(1).numpy() == data.train_y[n_train:]).mean())
    return _decode_test(test, data, trans, scale), {"decode": "viterbi", "scale": scale, "val_acc": val_acc,
                                                    "val_acc_argmax": raw_acc}


def predict_ensemble(members: list[Run], data: TimitData, out: Path, device: str = "auto",
                     decode: str = "argmax") -> Prediction:
    """The members' posteriors averaged with equal weights (frame MLPs and taggers alike, each with
    its own smoothing and precision), one CSV, and `<out>.json` recording the ensemble; `decode =
    "viterbi"` decodes along the utterances instead of taking each frame's argmax."""
    if len({r.path.resolve() for r in members}) != len(members):
        raise PhonetuiError("predict: a run is named twice in the ensemble")
    total = None
    for run in members:
        probs = test_posteriors(run, data, device).astype(np.float32)
        total = probs if total is None else total + probs
    how = {"decode": "argmax"}
    if decode == "viterbi":
        pred, how = _viterbi(members, data, total / len(members), device)
    else:
        pred = total.argmax(1)
    _write_csv(pred, out)
    acc = _accuracy(pred, data)
    record = {"members": [{"run": r.id, "path": str(r.path.resolve()), "weight": 1 / len(members)} for r in members],
              "csv": str(out.resolve()), "test_acc": acc, **how, "written": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_text(out.with_suffix(".json"), json.dumps(record, indent=1) + "\n")
    return Prediction(out, len(pred), acc)
