"""Predict the test set with a run's best model and export the `Id,Class` CSV."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import models, runs
from .config import parse_model
from .data import TimitData
from .errors import PhonetuiError
from .runs import Run
from .trainer import EVAL_BATCH, keep_freed_memory, resolve_device

PREDICT_BATCH = EVAL_BATCH


@dataclass(frozen=True)
class Prediction:
    path: Path
    rows: int
    test_acc: float | None


def load_model(run: Run, device: torch.device) -> tuple[torch.nn.Module, int]:
    """The run's best model (rebuilt from best.pt alone) and the input width it expects."""
    path = run.path / runs.CHECKPOINT
    if not path.is_file():
        raise PhonetuiError(f"{run.path}: no saved model yet ({runs.CHECKPOINT} appears after the first epoch)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = models.build(parse_model(state["model"], f"{path}: model"), state["input_dim"])
        model.load_state_dict(state["state_dict"])
    except (RuntimeError, KeyError, TypeError, EOFError, ValueError, pickle.UnpicklingError) as e:
        raise PhonetuiError(f"{path}: damaged checkpoint ({str(e).splitlines()[0]})") from None
    return model.to(device), state["input_dim"]


def predict(run: Run, data: TimitData, out: Path | None = None, device: str = "auto") -> Prediction:
    """Classify every test row in order, write the CSV atomically, note it in the run's status.
    Matmuls follow the run's own precision setting, resolved for this device."""
    dev = resolve_device(device)
    keep_freed_memory()
    model, width = load_model(run, dev)
    if width != data.width:
        raise PhonetuiError(f"{data.path / 'test_11.npy'}: width {data.width} but the model expects {width}")
    classes = torch.empty(len(data.test_x), dtype=torch.long)

    def take(lo: int, logits: torch.Tensor) -> None:
        classes[lo:lo + len(logits)] = logits.argmax(1).cpu()

    t = run.config.training
    bf16 = models.use_bf16(t.precision, dev, t.batch_size)
    models.infer(model, torch.from_numpy(data.test_x), dev, PREDICT_BATCH, take, bf16)
    pred = classes.numpy()
    out = out or run.path / runs.PREDICTION
    table = np.column_stack([np.arange(len(pred)), pred])
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        runs.atomic_write(out, lambda tmp: np.savetxt(tmp, table, fmt="%d", delimiter=",", header="Id,Class", comments=""))
    except OSError as e:
        raise PhonetuiError(f"{out}: cannot write the CSV ({e.strerror})") from None
    acc = float((pred == data.test_y).mean()) if data.test_y is not None else None
    run.update_status(prediction=str(out.resolve()), **({"test_acc": acc} if acc is not None else {}))
    return Prediction(out, len(pred), acc)
