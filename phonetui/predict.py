"""Predict the test set with a run's best model and export the `Id,Class` CSV."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import batches, checkpoint, runs
from .data import TEST_X, TimitData, utterances
from .device import keep_freed_memory, resolve_device, use_bf16
from .errors import PhonetuiError
from .fileio import atomic_write, failed
from .evaluation import posteriors, smooth
from .runs import Run


@dataclass(frozen=True)
class Prediction:
    path: Path
    rows: int
    test_acc: float | None


def predict(run: Run, data: TimitData, out: Path | None = None, device: str = "auto") -> Prediction:
    """Classify every test row (taggers utterance by utterance), smooth as the run does, write the
    CSV in row order atomically and note it in the run's prediction record. Matmuls follow the run's precision."""
    dev = resolve_device(device)
    keep_freed_memory()
    model, cfg, width = checkpoint.load(run, dev)
    if width != data.width:
        raise PhonetuiError(f"{data.path / TEST_X}: width {data.width} but the model expects {width}")
    if cfg.sequence:
        utterances.check_ordered(data.test_starts, len(data.test_x), data.path / TEST_X)
    t = run.config.training
    test_set = batches.source(cfg, data.test_x, None, data.test_starts, dev)
    probs, _ = posteriors(model, test_set, dev, use_bf16(t.precision, dev, t.batch_size))
    pred = smooth(probs, data.test_starts, t.smooth).argmax(1).cpu().numpy()
    out = out or run.path / runs.PREDICTION
    if out.is_symlink():  # write through the link (to the file it names), never replace the link itself
        out = out.resolve()
    table = np.column_stack([np.arange(len(pred)), pred])
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise failed(out.parent, "make the folder", e) from None
    atomic_write(out, lambda tmp: np.savetxt(tmp, table, fmt="%d", delimiter=",", header="Id,Class", comments=""))
    acc = float((pred == data.test_y).mean()) if data.test_y is not None else None
    runs.record_prediction(run, out, acc)
    return Prediction(out, len(pred), acc)
