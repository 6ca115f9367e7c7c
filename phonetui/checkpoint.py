"""best.pt: the best model so far, saved atomically and loaded with weights_only.

    {"model": ModelConfig table, "input_dim": row width, "state_dict": ..., "epoch", "val_acc", "preset"}
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import models, runs
from .config import ModelConfig, RunConfig, parse_model
from .errors import PhonetuiError
from .fileio import atomic_write, check_regular, failed
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
    atomic_write(path, lambda tmp: _save(state, tmp))
    return path


def _save(state: dict, tmp: Path) -> None:
    with open(tmp, "wb") as f:  # a Python file, so a full disk is an OSError naming no torch internals
        torch.save(state, f)


def load(run: Run, device: torch.device) -> tuple[torch.nn.Module, ModelConfig, int]:
    """The run's best model (rebuilt from best.pt alone), its config and the row width it expects."""
    path = run.path / runs.CHECKPOINT
    if not path.exists():
        raise PhonetuiError(f"{run.path}: no saved model yet ({runs.CHECKPOINT} appears after the first epoch)")
    check_regular(path)
    if path.stat().st_size == 0:
        raise PhonetuiError(f"{path}: damaged checkpoint (empty file)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        cfg = parse_model(state["model"], f"{path}: model")
        model = models.build(cfg, state["input_dim"])
        model.load_state_dict(state["state_dict"])
    except PhonetuiError:
        raise
    except OSError as e:
        raise failed(path, "read", e) from None
    except Exception as e:  # noqa: BLE001 - a cut or altered file fails in many ways; weights_only executes nothing
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". ")[0]
        raise PhonetuiError(f"{path}: damaged checkpoint ({reason})") from None
    return model.to(device), cfg, state["input_dim"]
