"""best.pt: the best model so far; last.pt: what resuming needs. Both saved atomically and
loaded with weights_only.

    best.pt  {"model": ModelConfig table, "input_dim": row width, "state_dict": ..., "epoch", "val_acc", "preset"}
    last.pt  {"epoch", "model", "optimizer", "scheduler", "torch_rng", "batch_rng", "best", "since_best"}
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


def saved_best(run: Run) -> tuple[int, float | None] | None:
    """The epoch and val acc of the model in best.pt; None where there is none or it cannot be read."""
    try:
        state = torch.load(run.path / runs.CHECKPOINT, map_location="cpu", weights_only=True)
        return int(state["epoch"]), None if state["val_acc"] < 0 else float(state["val_acc"])
    except Exception:  # noqa: BLE001 - missing or damaged: no model to record
        return None


def _save(state: dict, tmp: Path) -> None:
    with open(tmp, "wb") as f:  # a Python file, so a full disk is an OSError naming no torch internals
        torch.save(state, f)


def save_state(run: Run, state: dict) -> None:
    """last.pt: the training state at the end of an epoch (see trainer._loop)."""
    atomic_write(run.path / runs.LAST, lambda tmp: _save(state, tmp))


def load_state(run: Run) -> dict:
    path = run.path / runs.LAST
    if not path.exists():
        raise PhonetuiError(f"{run.path}: nothing to resume from (no {runs.LAST}: it is written at the end of each epoch)")
    check_regular(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        missing = {"epoch", "model", "optimizer", "scheduler", "torch_rng", "batch_rng", "best", "since_best"} - set(state)
        if missing:
            raise KeyError(f"missing {', '.join(sorted(missing))}")
    except OSError as e:
        raise failed(path, "read", e) from None
    except Exception as e:  # noqa: BLE001 - as in load()
        raise PhonetuiError(f"{path}: damaged training state ({_first_line(e)})") from None
    return state


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
        raise PhonetuiError(f"{path}: damaged checkpoint ({_first_line(e)})") from None
    return model.to(device), cfg, state["input_dim"]


def _first_line(e: Exception) -> str:
    """An exception's first sentence (torch's load errors run to a paragraph; an empty one has its type)."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0].split(". ")[0]
