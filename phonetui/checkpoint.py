"""best.pt: the best model so far, saved atomically and loaded with weights_only.

    {"model": ModelConfig table, "input_dim": row width, "state_dict": ..., "epoch", "val_acc", "preset"}
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from . import models, runs
from .config import ModelConfig, RunConfig, parse_model
from .errors import PhonetuiError
from .runs import Run


def save(run: Run, model: torch.nn.Module, cfg: RunConfig, width: int, epoch: int, val_acc: float | None) -> Path:
    state = {
        "model": cfg.to_dict()["model"],
        "input_dim": width,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "epoch": epoch,
        "val_acc": -1.0 if val_acc is None else val_acc,
        "preset": cfg.preset,
    }
    path = run.path / runs.CHECKPOINT
    runs.atomic_write(path, lambda tmp: torch.save(state, tmp))
    return path


def load(run: Run, device: torch.device) -> tuple[torch.nn.Module, ModelConfig, int]:
    """The run's best model (rebuilt from best.pt alone), its config and the row width it expects."""
    path = run.path / runs.CHECKPOINT
    if not path.is_file():
        raise PhonetuiError(f"{run.path}: no saved model yet ({runs.CHECKPOINT} appears after the first epoch)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        cfg = parse_model(state["model"], f"{path}: model")
        model = models.build(cfg, state["input_dim"])
        model.load_state_dict(state["state_dict"])
    except (RuntimeError, KeyError, TypeError, EOFError, ValueError, pickle.UnpicklingError) as e:
        raise PhonetuiError(f"{path}: damaged checkpoint ({str(e).splitlines()[0]})") from None
    return model.to(device), cfg, state["input_dim"]
