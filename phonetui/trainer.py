"""The trainer: a plain PyTorch loop that emits events and stops when asked.

Batches are index-selected from tensors that already live on the training device (the whole
training set goes to the GPU when it fits; on the CPU the tensor is the memory-mapped file), so
there is no per-sample Dataset or DataLoader. Metrics accumulate on the device and are read once
per epoch. `cancel` is checked between batches; Ctrl+C does the same; either way the best model
stays saved.
"""

from __future__ import annotations

import copy
import ctypes
import math
import platform
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import __version__, models, runs
from .config import RunConfig, fit_problems
from .data import TimitData
from .errors import PhonetuiError, one_line
from .runs import EpochMetrics, Run

EVAL_BATCH = 8192
PROGRESS_EVERY_S = 0.25


@dataclass(frozen=True)
class RunStarted:
    run: Run
    device: str  # e.g. "cpu" or "cuda, bf16 autocast"
    n_train: int
    n_val: int


@dataclass(frozen=True)
class Progress:
    epoch: int
    epochs: int
    frames: int
    total: int
    frames_per_s: float

    @property
    def eta_s(self) -> float:
        return (self.total - self.frames) / self.frames_per_s if self.frames_per_s else float("inf")


@dataclass(frozen=True)
class EpochEnd:
    metrics: EpochMetrics
    epochs: int


@dataclass(frozen=True)
class BestSaved:
    epoch: int
    val_acc: float | None
    path: Path


@dataclass(frozen=True)
class Finished:
    run: Run


@dataclass(frozen=True)
class Cancelled:
    run: Run


@dataclass(frozen=True)
class Failed:
    run: Run | None
    message: str


Event = RunStarted | Progress | EpochEnd | BestSaved | Finished | Cancelled | Failed
Listener = Callable[[Event], None]


@dataclass(frozen=True)
class FastPaths:
    """Speed levers, each used only where the device supports it (the bench switches them one by one;
    bf16 autocast is the run's `training.precision`, recorded with it)."""

    fused: bool = True  # fused Adam/AdamW kernels (CUDA and CPU)
    compile: bool = False  # torch.compile the model; falls back to eager if compiling fails


class _Stop(Exception):
    """Raised inside the loop when the cancel flag is set."""


def log_line(m: EpochMetrics, epochs: int) -> str:
    """The course sample code's epoch line."""
    width = len(str(epochs)) if epochs > 999 else 3
    line = f"[{m.epoch:0{width}d}/{epochs:0{width}d}] Train Acc: {m.train_acc:3.6f} Loss: {m.train_loss:3.6f}"
    if m.val_acc is not None:
        line += f" | Val Acc: {m.val_acc:3.6f} loss: {m.val_loss:3.6f}"
    return line


def resolve_device(name: str) -> torch.device:
    """auto picks cuda, then mps, then cpu; a named device that is not there is a PhonetuiError."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not (torch.cuda.is_available() and (dev.index or 0) < torch.cuda.device_count()):
        raise PhonetuiError(f"training.device = '{name}': no such CUDA device here")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise PhonetuiError(f"training.device = '{name}': MPS is not available here")
    return dev


def keep_freed_memory() -> None:
    """Have glibc's malloc reuse freed buffers rather than hand them back to the kernel.

    Every training step allocates activations and bf16 copies of a few MB; by default each is a
    fresh mmap whose pages fault in again: 230 (fp32) to 870 (bf16) page faults a step at batch
    512, a fifth of a bf16 step on CPU. Process-wide; does nothing where glibc is not the C library.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: blocks under 32 MiB come from the heap
        libc.mallopt(-1, 512 << 20)  # M_TRIM_THRESHOLD: keep up to 512 MiB of freed heap
    except (OSError, AttributeError):
        pass


def fits(nbytes: int, device: torch.device) -> bool:
    """Whether `nbytes` of data can live on the device with room left to train (CPU: always)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes < 0.6 * free


def to_device(x: np.ndarray, device: torch.device) -> torch.Tensor:
    """A tensor view of x on the host, or, where it fits, a copy resident on the device, filled chunk by chunk."""
    host = torch.from_numpy(x)
    if device.type == "cpu" or not fits(x.nbytes, device):
        return host
    out = torch.empty(host.shape, dtype=host.dtype, device=device)
    for lo in range(0, len(host), 1 << 18):
        out[lo:lo + (1 << 18)].copy_(host[lo:lo + (1 << 18)])
    return out


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device,
             bf16: bool = False) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) in large batches under inference mode."""
    correct = torch.zeros((), dtype=torch.long, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)

    def add(lo: int, logits: torch.Tensor) -> None:
        nonlocal correct, loss_sum
        yb = y[lo:lo + len(logits)].to(device)
        correct += (logits.argmax(1) == yb).sum()
        loss_sum += F.cross_entropy(logits, yb, reduction="sum").double()

    models.infer(model, x, device, EVAL_BATCH, add, bf16)
    return correct.item() / len(x), loss_sum.item() / len(x)


def _checkpoint(run: Run, model: torch.nn.Module, cfg: RunConfig, width: int, epoch: int, val_acc: float | None) -> Path:
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


def _compiled(model: torch.nn.Module, example: torch.Tensor) -> torch.nn.Module:
    """torch.compile(model), tried once on `example` without side effects (weights, BatchNorm
    statistics and RNG are restored), or the model itself where compiling is not possible here."""
    state = copy.deepcopy(model.state_dict())
    try:
        with torch.random.fork_rng(devices=[example.device] if example.is_cuda else []):
            compiled = torch.compile(model)
            compiled(example).float().sum().backward()
        return compiled
    except Exception:  # noqa: BLE001 - no compiler, unsupported backend: eager still trains
        return model
    finally:
        model.load_state_dict(state)
        model.zero_grad(set_to_none=True)


def train(cfg: RunConfig, data: TimitData, runs_dir: Path, listen: Listener = lambda e: None,
          cancel: threading.Event | None = None, fast: FastPaths = FastPaths()) -> Run:
    """Train one run to the end, to cancellation, or to failure (then raises PhonetuiError).

    Emits RunStarted, Progress, EpochEnd, BestSaved and one of Finished / Cancelled / Failed.
    """
    t = cfg.training
    cancel = cancel or threading.Event()
    device = resolve_device(t.device)
    n_train = data.n_train(t.val_ratio)
    n_val = len(data.train_x) - n_train
    for key, reason in fit_problems(t.batch_size, n_train, cfg.model.batchnorm).items():
        raise PhonetuiError(f"training.{key} = {getattr(t, key)}: {reason}")

    bf16 = models.use_bf16(t.precision, device, t.batch_size)
    keep_freed_memory()
    record = {"data": str(data.path.resolve()), "demo_data": data.demo or "none", "train_rows": n_train,
              "val_rows": n_val, "device": str(device), "bf16_autocast": bf16,
              "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              "phonetui": __version__, "torch": torch.__version__, "numpy": np.__version__,
              "python": platform.python_version(), "threads": torch.get_num_threads()}
    run = runs.create(runs_dir, cfg, record)
    listen(RunStarted(run, f"{device}, bf16 autocast" if bf16 else str(device), n_train, n_val))
    try:
        _loop(cfg, data, run, device, bf16, n_train, listen, cancel, fast)
    except (_Stop, KeyboardInterrupt):
        run.update_status(status="stopped", ended=time.strftime("%Y-%m-%d %H:%M:%S"), message="stopped by the user")
        listen(Cancelled(run))
        return run
    except Exception as e:  # noqa: BLE001 - every failure becomes one readable line
        message = one_line(e)
        run.update_status(status="failed", ended=time.strftime("%Y-%m-%d %H:%M:%S"), message=message)
        listen(Failed(run, message))
        raise PhonetuiError(message) from e
    run.update_status(status="finished", ended=time.strftime("%Y-%m-%d %H:%M:%S"))
    listen(Finished(run))
    return run


def _loop(cfg: RunConfig, data: TimitData, run: Run, device: torch.device, bf16: bool, n_train: int,
          listen: Listener, cancel: threading.Event, fast: FastPaths) -> None:
    t = cfg.training
    torch.manual_seed(t.seed)
    gen = torch.Generator().manual_seed(t.seed)
    model = models.build(cfg.model, data.width).to(device)
    fused = {"fused": True} if device.type in ("cuda", "cpu") and fast.fused else {}
    opt_cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    opt = opt_cls(model.parameters(), lr=t.lr, weight_decay=t.weight_decay, **fused)
    steps_per_epoch = math.ceil(n_train / t.batch_size)
    total_steps = steps_per_epoch * t.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, (lambda s: 0.5 * (1 + math.cos(math.pi * s / total_steps))) if t.schedule == "cosine" else (lambda s: 1.0))

    x_all = to_device(data.train_x, device)
    y_all = torch.from_numpy(data.train_y).to(x_all.device)  # batches are selected where the data lives
    x_train, y_train, x_val, y_val = x_all[:n_train], y_all[:n_train], x_all[n_train:], y_all[n_train:]
    step_model = _compiled(model, x_train[:t.batch_size].to(device)) if fast.compile else model
    history: list[EpochMetrics] = []
    best = -1.0
    for epoch in range(1, t.epochs + 1):
        start = time.perf_counter()
        model.train()
        perm = torch.randperm(n_train, generator=gen).to(x_all.device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        loss_sum = torch.zeros((), dtype=torch.float32, device=device)
        seen, last_report = 0, start
        for lo in range(0, n_train, t.batch_size):
            if cancel.is_set():
                raise _Stop
            idx = perm[lo:lo + t.batch_size]
            if cfg.model.batchnorm and len(idx) < 2:
                continue
            xb = x_train.index_select(0, idx).to(device, non_blocking=True)
            yb = y_train.index_select(0, idx).to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = step_model(xb)
                loss = F.cross_entropy(logits.float(), yb, label_smoothing=t.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach() * len(idx)
            correct += (logits.argmax(1) == yb).sum()
            seen += len(idx)
            now = time.perf_counter()
            if now - last_report >= PROGRESS_EVERY_S:
                last_report = now
                listen(Progress(epoch, t.epochs, seen, n_train, seen / (now - start)))
        lr = opt.param_groups[0]["lr"]
        train_acc, train_loss = correct.item() / max(seen, 1), loss_sum.item() / max(seen, 1)
        val_acc = val_loss = None
        if len(x_val):
            model.eval()
            val_acc, val_loss = evaluate(model, x_val, y_val, device, bf16)
        m = EpochMetrics(epoch, train_acc, train_loss, val_acc, val_loss, lr, time.perf_counter() - start)
        history.append(m)
        run.write_metrics(history)
        listen(EpochEnd(m, t.epochs))
        score = train_acc if val_acc is None else val_acc
        improved = val_acc is None or score > best
        if improved:
            best = score
            path = _checkpoint(run, model, cfg, data.width, epoch, val_acc)
            listen(BestSaved(epoch, val_acc, path))
        run.update_status(epochs_done=epoch, **({"best_epoch": epoch, "best_val_acc": val_acc} if improved else {}))
