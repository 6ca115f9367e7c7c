"""The trainer: a plain PyTorch loop that emits events and stops when asked.

The loop reads top to bottom: batches -> step -> evaluate -> record. Batches (phonetui.batches:
rows for frame models, whole utterances for taggers) are selected from tensors that already live
on the training device (the GPU when the data fits; on the CPU the memory-mapped file), so there
is no per-sample Dataset or DataLoader; the step (phonetui.step) owns the model, optimizer,
schedule and fast paths, and adds up loss and accuracy on the device, read once per epoch; the
best model is saved with its per-phone diagnostics. `cancel` is checked between batches; Ctrl+C
(and, from the CLI, SIGTERM or SIGHUP) does the same; either way the best model stays saved.
"""

from __future__ import annotations

import os
import platform
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from . import __version__, batches, checkpoint, decode, diagnostics, runs, threads
from .config import RunConfig, epochs_for, fit_problems, n_epochs, steps_per_epoch
from .data import TEST_X, TRAIN_X, TimitData, utterances
from .device import AUTOCASTS, Autocast, autocast, fits, free_memory, gpu_line, keep_freed_memory, resolve_device
from .errors import PhonetuiError, one_line
from .events import (BestSaved, Cancelled, EpochEnd, Failed, Finished, Listener, Outcome, Progress, RunStarted,
                     StopFlag, stop_flag)
from .evaluation import posteriors, score
from .fileio import write_text
from .runs import EpochMetrics, Run
from .step import Plan, Step, plan

PROGRESS_EVERY_S = 0.25


class _Stop(Exception):
    """Raised inside the loop when the cancel flag is set."""


def log_line(m: EpochMetrics, epochs: int) -> str:
    """The course sample code's epoch line."""
    width = len(str(epochs)) if epochs > 999 else 3
    line = f"[{m.epoch:0{width}d}/{epochs:0{width}d}] Train Acc: {m.train_acc:3.6f} Loss: {m.train_loss:3.6f}"
    if m.val_acc is not None:
        line += f" | Val Acc: {m.val_acc:3.6f} loss: {m.val_loss:3.6f}"
    return line


def _check(cfg: RunConfig, data: TimitData) -> tuple[int, int]:
    """(train rows, val rows) for this config, or PhonetuiError before any run folder is touched."""
    t, seq = cfg.training, cfg.model.sequence
    if seq:
        utterances.check_ordered(data.utterance_starts, len(data.train_x), data.path / TRAIN_X)
        utterances.check_ordered(data.test_starts, len(data.test_x), data.path / TEST_X)
    n_train = data.n_train(t.val_ratio, seq)
    unit = "utterances" if seq else "rows"
    for key, reason in fit_problems(t.batch_size, data.train_units(t.val_ratio, seq), cfg.model.batchnorm, unit).items():
        raise PhonetuiError(f"training.{key} = {getattr(t, key)}: {reason}")
    return n_train, len(data.train_x) - n_train


def _plan(cfg: RunConfig, data: TimitData, n_train: int, device: torch.device, cast: Autocast, fused: bool) -> Plan:
    resident = device.type == "cpu" or fits(data.train_x[:n_train].nbytes, device)
    return plan(cfg, device, cast, resident, fused)


def _recorded_autocast(record: dict) -> Autocast:
    """The autocast a run trained with, from its record (runs before fp16 recorded bf16_autocast)."""
    kind = record.get("autocast", "bf16" if record.get("bf16_autocast") else "off")
    return Autocast(kind if kind in AUTOCASTS else "off")


def train(cfg: RunConfig, data: TimitData, runs_dir: Path, listen: Listener = lambda e: None,
          cancel: StopFlag | threading.Event | None = None, fused: bool = True) -> Run:
    """Train one run to the end, to cancellation, or to failure (then raises PhonetuiError).

    Emits RunStarted, Progress, EpochEnd, BestSaved and one of Finished / Cancelled / Failed.
    `fused=False` turns fused Adam off (the bench measures what it buys).
    """
    sampler = threads.CpuSampler()  # the machine's load, looked at while the run is set up
    n_train, n_val = _check(cfg, data)
    asked = cfg.training.epochs
    cfg = cfg.with_training(epochs=epochs_for(cfg.training, data.train_units(cfg.training.val_ratio, cfg.model.sequence)))
    t = cfg.training
    device = resolve_device(t.device)
    _check_fits_memory(cfg, data.width, device)
    p = _plan(cfg, data, n_train, device, autocast(t.precision, device, t.batch_size), fused)
    gov = _governor(cfg, data, n_train, sampler)
    record = {"data": str(data.path.resolve()), "demo_data": data.demo or "none", "train_rows": n_train,
              "val_rows": n_val, "device": str(device), **p.record(),
              **({"epochs_asked": asked} if t.epochs != asked else {}),
              "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              "phonetui": __version__, "torch": torch.__version__, "numpy": np.__version__,
              "python": platform.python_version(), **gov.record()}
    run = runs.create(runs_dir, cfg, record)
    return _run(cfg, data, run, device, p, gov, n_train, n_val, listen, stop_flag(cancel), None)


def resume(run: Run, data: TimitData, listen: Listener = lambda e: None,
           cancel: StopFlag | threading.Event | None = None, fused: bool = True) -> Run:
    """Continue a stopped or interrupted run from the end of its last saved epoch (last.pt): same
    folder, its metrics continued; on the same device the result matches an uninterrupted run."""
    if run.state in ("running", "finished"):
        raise PhonetuiError(f"{run.path}: {run.state}, nothing to resume"
                            + (" (the training process is still alive)" if run.state == "running" else ""))
    sampler = threads.CpuSampler()
    state = checkpoint.load_state(run)
    cfg = run.config
    n_train, n_val = _check(cfg, data)
    if (n_train, n_val) != (run.record.get("train_rows"), run.record.get("val_rows")):
        raise PhonetuiError(f"{data.path}: not the data {run.id} trained on ({n_train:,} train / {n_val:,} val rows "
                            f"here, {run.record.get('train_rows')} / {run.record.get('val_rows')} in the run)")
    device = resolve_device(cfg.training.device)
    _check_fits_memory(cfg, data.width, device)
    p = _plan(cfg, data, n_train, device, _recorded_autocast(run.record), fused)
    cpu = torch.device("cpu")
    trial = Step(cfg, data.width, cpu, 1, plan(cfg, cpu, Autocast(), True))
    checkpoint.check_state(run, state, trial.model, trial.opt, data.width)  # before anything about the run changes
    gov = _governor(cfg, data, n_train, sampler)
    run.acquire()
    try:
        run.write_status(status="running", pid=os.getpid(), ended="", outcome=Outcome.RUNNING,
                         message=f"resumed after epoch {state['epoch']}")
        run.update_record(**gov.record())
    except BaseException:
        run.release()
        raise
    return _run(cfg, data, run, device, p, gov, n_train, n_val, listen, stop_flag(cancel), state)


def _governor(cfg: RunConfig, data: TimitData, n_train: int, sampler: threads.CpuSampler) -> threads.Governor:
    """The run's CPU threads (phonetui.threads), set for this thread: the training thread."""
    t, seq = cfg.training, cfg.model.sequence
    frames = t.batch_size * (n_train / max(data.train_units(t.val_ratio, seq), 1) if seq else 1)
    return threads.Governor(t.threads, cfg.model.param_count(data.width) * frames, torch.set_num_threads, sampler)


def _run(cfg: RunConfig, data: TimitData, run: Run, device: torch.device, p: Plan, gov: threads.Governor,
         n_train: int, n_val: int, listen: Listener, cancel: StopFlag, state: dict | None) -> Run:
    """The loop, with every way it can end recorded in the run's status."""
    keep_freed_memory()
    try:
        listen(RunStarted(run, f"{device}{p.autocast.label()}, {threads.count(gov.threads)}", n_train, n_val))
        early = _loop(cfg, data, run, device, p, gov, n_train, listen, cancel, state)
        run.write_status(status="finished", ended=time.strftime("%Y-%m-%d %H:%M:%S"),
                         outcome=Outcome.EARLY_STOPPED if early else Outcome.FINISHED)
    except (_Stop, KeyboardInterrupt) as e:
        return _stopped(run, cancel, str(e), listen)
    except Exception as e:  # noqa: BLE001 - every failure becomes one readable line
        if cancel.is_set():  # a stop that cut a write short (torch.save then raises an error of its own)
            return _stopped(run, cancel, "", listen)
        message = one_line(e)
        try:
            write_text(run.path / runs.ERROR_LOG, traceback.format_exc())
        except PhonetuiError:
            pass  # the status still says what failed, in a line
        try:
            run.write_status(status="failed", ended=time.strftime("%Y-%m-%d %H:%M:%S"), message=message,
                             outcome=Outcome.FAILED, **_on_disk(run))
        except PhonetuiError:
            pass  # the disk is full: with the lock released the run shows as interrupted
        listen(Failed(run, message))
        raise PhonetuiError(message) from e
    finally:
        run.release()
    listen(Finished(run))
    return run


def _stopped(run: Run, cancel: StopFlag, said: str, listen: Listener) -> Run:
    """Record a stop: the cancel flag's reason and outcome (the user, a signal, Optuna's pruner)."""
    message = (cancel.reason if cancel.is_set() else "") or said or "stopped by the user"
    run.write_status(status="stopped", ended=time.strftime("%Y-%m-%d %H:%M:%S"), message=message,
                     outcome=cancel.outcome if cancel.is_set() else Outcome.STOPPED, **_on_disk(run))
    listen(Cancelled(run))
    return run


def _on_disk(run: Run) -> dict:
    """The epochs and best model the run's files hold, for its last status: a stop or failure inside an
    epoch's bookkeeping (metrics, best.pt, then status.json) can come after the files and before the
    status that records them."""
    fields = {"epochs_done": len(run.metrics())}
    if best := checkpoint.saved_best(run):
        fields["best_epoch"], fields["best_val_acc"] = best
    return fields


TRAIN_BYTES_PER_PARAM = 16  # fp32 weights, gradients and Adam's two moments


def _check_fits_memory(cfg: RunConfig, width: int, device: torch.device) -> None:
    """Refuse, before allocating, a model whose weights and optimizer state alone exceed free memory."""
    params = cfg.model.param_count(width)
    need, free = params * TRAIN_BYTES_PER_PARAM, free_memory(device)
    if free is not None and need > free:
        raise PhonetuiError(f"model {cfg.model.summary()} ({params:,} parameters) needs {need / 2**30:,.1f} GiB "
                            f"for weights, gradients and Adam state, but {device} has {free / 2**30:,.1f} GiB free")


def _record_step(run: Run, step: Step, gov: threads.Governor) -> None:
    """Keep the run's record of its step true: a fallback found while training (or a resume on
    another device) changes what runs, and an auto thread count follows the machine's load."""
    rec = step.record() | gov.record()
    if any(run.record.get(k) != v for k, v in rec.items()):
        run.update_record(**rec)


def _loop(cfg: RunConfig, data: TimitData, run: Run, device: torch.device, p: Plan, gov: threads.Governor,
          n_train: int, listen: Listener, cancel: StopFlag, state: dict | None) -> bool:
    """Train to the last epoch; True when patience ended it early."""
    t = cfg.training
    torch.manual_seed(t.seed)
    gen = torch.Generator().manual_seed(t.seed)
    starts = data.utterance_starts
    train_set = batches.source(cfg.model, data.train_x[:n_train], data.train_y[:n_train],
                               utterances.within(starts, 0, n_train), device)
    val_starts = utterances.within(starts, n_train, len(data.train_x))
    val_set = batches.source(cfg.model, data.train_x[n_train:], data.train_y[n_train:], val_starts, device)
    trans = decode.of_training(data, n_train) if t.decode == "viterbi" else None
    step = Step(cfg, data.width, device, steps_per_epoch(t.batch_size, train_set.units) * t.epochs, p)
    step.try_compile(next(train_set.ordered(t.batch_size)).inputs)
    _record_step(run, step, gov)
    history: list[EpochMetrics] = []
    best, since_best, first = -1.0, 0, 1
    if state:  # resuming: everything as it was at the end of epoch state["epoch"]
        step.load_state_dict(state)
        torch.set_rng_state(state["torch_rng"])
        gen.set_state(state["batch_rng"])
        if device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        best, since_best, first = state["best"], state["since_best"], state["epoch"] + 1
        history = run.metrics()[:state["epoch"]]
        for m in history:
            listen(EpochEnd(m, t.epochs, earlier=True))
    for epoch in range(first, t.epochs + 1):
        start = last_report = time.perf_counter()
        lr = step.current_lr()  # the rate the epoch trains with: a cosine run's last epoch is not lr 0
        step.model.train()
        for idx in train_set.epoch(t.batch_size, gen):
            if cancel.is_set():
                raise _Stop
            if cfg.model.batchnorm and len(idx) < 2:
                continue
            step(train_set, idx)
            now = time.perf_counter()
            gov.tick(time.monotonic())
            if now - last_report >= PROGRESS_EVERY_S:
                last_report = now
                listen(Progress(epoch, t.epochs, step.frames, n_train, step.frames / (now - start), gpu_line(device)))
        _record_step(run, step, gov)
        train_acc, train_loss = step.totals()
        scores = (score(*posteriors(step.model, val_set, device, p.dtype), val_set.y, val_starts, t.smooth, trans)
                  if val_set.rows else None)
        val_acc = scores.acc if scores else None
        m = EpochMetrics(epoch, train_acc, train_loss, val_acc, scores.loss if scores else None, lr,
                         time.perf_counter() - start,
                         scores.raw_acc if scores and (t.smooth > 1 or trans is not None) else None)
        history.append(m)
        run.write_metrics(history)
        listen(EpochEnd(m, t.epochs))
        improved = val_acc is None or val_acc > best
        if improved:
            best = train_acc if val_acc is None else val_acc
            path = checkpoint.save(run, step.model, cfg, data.width, epoch, val_acc, scores.decoder if scores else None)
            if scores:
                diagnostics.write(run, scores.confusion)
            listen(BestSaved(epoch, val_acc, path))
        since_best = 0 if improved else since_best + 1
        run.write_status(epochs_done=epoch, **({"best_epoch": epoch, "best_val_acc": val_acc} if improved else {}))
        rng = {"cuda_rng": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}
        checkpoint.save_state(run, {"run": run.uid, "width": data.width, "epoch": epoch, **step.state_dict(),
                                    "torch_rng": torch.get_rng_state(), "batch_rng": gen.get_state(), **rng,
                                    "best": best, "since_best": since_best})
        if t.patience and val_acc is not None and since_best >= t.patience:
            run.write_status(message=f"stopped early after epoch {epoch}: no val acc gain in {n_epochs(t.patience)}")
            return True
    return False
