"""best.pt: the best model so far; last.pt: what resuming needs. Both saved atomically and
loaded with weights_only.

    best.pt  {"model": ModelConfig table, "input_dim": row width, "state_dict": ..., "epoch", "val_acc", "preset",
              ["decode_scale", "decode_loop": the Viterbi scale and duration term tuned on validation,
              with decode = "viterbi"]}
    last.pt  {"run": run id, "width": row width, "epoch", "model", "optimizer", "scheduler", "torch_rng",
              "batch_rng", ["cuda_rng"], "best", "since_best"}

Both are serialised in memory and written with a plain file write, so a full disk is the OSError
that names the file, not an error from inside torch. last.pt is checked against its run (identity,
epoch, shapes) before a resume changes anything.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from . import models, runs
from .config import ModelConfig, RunConfig, parse_model
from .errors import PhonetuiError, first_line
from .fileio import atomic_write, check_regular, failed
from .runs import Run


def save(run: Run, model: torch.nn.Module, cfg: RunConfig, width: int, epoch: int, val_acc: float | None,
         decoder: tuple[float, float] | None = None) -> Path:
    state = {
        "model": cfg.to_dict()["model"],
        "input_dim": width,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "epoch": epoch,
        "val_acc": -1.0 if val_acc is None else val_acc,
        "preset": cfg.preset,
        **({"decode_scale": decoder[0], "decode_loop": decoder[1]} if decoder is not None else {}),
    }
    path = run.path / runs.CHECKPOINT
    atomic_write(path, lambda tmp: _save(state, tmp))
    return path


def decoder(run: Run) -> tuple[float, float] | None:
    """The Viterbi (scale, loop) saved with the run's best model (None before decode = "viterbi"
    saved one; a model saved before the duration term existed has loop 0)."""
    try:
        state = _read(run.path / runs.CHECKPOINT)
    except Exception:  # noqa: BLE001 - checkpoint.load reports a damaged file
        return None
    scale, loop = state.get("decode_scale"), state.get("decode_loop", 0.0)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (scale, loop)):
        return None
    return float(scale), float(loop)


def saved_best(run: Run) -> tuple[int, float | None] | None:
    """The epoch and val acc of the model in best.pt; None where there is none or it cannot be read."""
    try:
        state = _read(run.path / runs.CHECKPOINT)
        return int(state["epoch"]), None if state["val_acc"] < 0 else float(state["val_acc"])
    except Exception:  # noqa: BLE001 - missing or damaged: no model to record
        return None


def _read(path: Path) -> dict:
    """torch.load with weights_only (nothing in the file is executed), quietly: a file that is not
    torch's makes torch warn before it fails, and the failure is reported in one line anyway."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=True)


def _save(state: dict, tmp: Path) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)  # in memory: torch's writer turns a failed write into an error of its own
    with open(tmp, "wb") as f:
        f.write(buf.getbuffer())


@dataclass
class TrainingState:
    """Where the loop is at the end of an epoch, as last.pt keeps it beside the step's and the random
    generators' state (the one author of last.pt's layout is save_state, its one reader check_state)."""

    epoch: int = 0  # the last epoch finished
    best: float = -1.0  # the best val acc so far (train acc without a validation split)
    since_best: int = 0  # epochs since it improved (patience)


def save_state(run: Run, ts: TrainingState, step: dict, gen: torch.Generator, device: torch.device, width: int) -> None:
    """last.pt: the training state at the end of an epoch: the loop's place, the step's model,
    optimizer, schedule (and GradScaler), and every random generator (on CUDA its own too)."""
    rng = {"cuda_rng": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}
    state = {"run": run.uid, "width": width, "epoch": ts.epoch, **step, "torch_rng": torch.get_rng_state(),
             "batch_rng": gen.get_state(), **rng, "best": ts.best, "since_best": ts.since_best}
    atomic_write(run.path / runs.LAST, lambda tmp: _save(state, tmp))


def restore(state: dict, gen: torch.Generator, device: torch.device) -> TrainingState:
    """Set the random generators as last.pt kept them (checked by check_state); the loop's place."""
    torch.set_rng_state(state["torch_rng"])
    gen.set_state(state["batch_rng"])
    if device.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"], device)
    return TrainingState(state["epoch"], state["best"], state["since_best"])


def load_state(run: Run) -> dict:
    """last.pt read back (not yet checked against the run: see check_state)."""
    path = run.path / runs.LAST
    if not path.exists():
        raise PhonetuiError(f"{run.path}: nothing to resume from (no {runs.LAST}: it is written at the end of each epoch)")
    check_regular(path)
    try:
        state = _read(path)
        missing = {"epoch", "model", "optimizer", "scheduler", "torch_rng", "batch_rng", "best", "since_best"} - set(state)
        if missing:
            raise KeyError(f"missing {', '.join(sorted(missing))}")
    except Exception as e:  # noqa: BLE001 - as in load()
        raise _unreadable(path, "damaged training state", e) from None
    return state


def check_state(run: Run, state: dict, model: torch.nn.Module, opt: torch.optim.Optimizer, width: int) -> None:
    """Refuse a last.pt that is not this run's end of an epoch: another run's file (its id), an epoch
    that is not an integer within the run's recorded epochs, or weights and optimizer state whose
    shapes do not fit the run's model on this data (loaded into `model` and `opt` if they do)."""
    path = run.path / runs.LAST
    if state.get("run", run.uid) != run.uid:
        raise PhonetuiError(f"{path}: belongs to another run ({str(state['run'])[:40]!r}), not {run.id} ({run.uid})")
    epoch, done = state["epoch"], len(run.metrics())
    if type(epoch) is not int or not 1 <= epoch <= min(run.config.training.epochs, done):
        raise PhonetuiError(f"{path}: epoch {repr(epoch)[:20]} is not one this run finished "
                            f"(1 to {min(run.config.training.epochs, done)})")
    if state.get("width", width) != width:
        raise PhonetuiError(f"{path}: saved for rows of {state['width']} features; this data has {width}")
    try:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        for p in model.parameters():
            for value in opt.state[p].values():
                if isinstance(value, torch.Tensor) and value.dim() and value.shape != p.shape:
                    raise ValueError(f"optimizer state of shape {tuple(value.shape)} for a weight of {tuple(p.shape)}")
        int(state["scheduler"]["last_epoch"])
        for key in ("torch_rng", "batch_rng"):
            if not (isinstance(state[key], torch.Tensor) and state[key].dtype == torch.uint8):
                raise ValueError(f"{key} is not a generator state")
        if type(state["since_best"]) is not int or not isinstance(state["best"], (int, float)):
            raise ValueError("best / since_best have the wrong type")
        scaler = state.get("scaler", {"scale": 1.0, "_growth_tracker": 0})  # fp16 runs: the GradScaler's state
        if not (isinstance(scaler, dict) and isinstance(scaler.get("scale"), (int, float)) and 0 < scaler["scale"] < 1e38
                and type(scaler.get("_growth_tracker")) is int):
            raise ValueError("the GradScaler state is not one")
    except Exception as e:  # noqa: BLE001 - shapes, keys and types all fail in their own way
        raise PhonetuiError(f"{path}: does not fit this run's model ({' '.join(str(e).split())[:200]})") from None


def load(run: Run, device: torch.device) -> tuple[torch.nn.Module, ModelConfig, int]:
    """The run's best model (rebuilt from best.pt alone), its config and the row width it expects."""
    path = run.path / runs.CHECKPOINT
    if not path.exists():
        raise PhonetuiError(f"{run.path}: no saved model yet ({runs.CHECKPOINT} appears after the first epoch)")
    check_regular(path)
    if path.stat().st_size == 0:
        raise PhonetuiError(f"{path}: damaged checkpoint (empty file)")
    try:
        state = _read(path)
        cfg = parse_model(state["model"], f"{path}: model")
        model = models.build(cfg, state["input_dim"])
        model.load_state_dict(state["state_dict"])
    except PhonetuiError:
        raise
    except Exception as e:  # noqa: BLE001 - a cut or altered file fails in many ways; weights_only executes nothing
        raise _unreadable(path, "damaged checkpoint", e) from None
    return model.to(device), cfg, state["input_dim"]


def _unreadable(path: Path, what: str, e: Exception) -> PhonetuiError:
    """The line for a checkpoint torch cannot load: cut short (a zip archive ends with its directory),
    unreadable, or damaged otherwise."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            zipped = f.read(4) == b"PK\x03\x04"
            f.seek(max(0, size - 66_000))
            whole = b"PK\x05\x06" in f.read()
    except OSError as err:
        return failed(path, "read", err)
    if zipped and not whole:
        return PhonetuiError(f"{path}: {what} (truncated: {size:,} bytes and no end of archive)")
    if isinstance(e, OSError):
        return failed(path, "read", e)
    return PhonetuiError(f"{path}: {what} ({first_line(e).split('. ')[0]})")  # torch's first sentence
