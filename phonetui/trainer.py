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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import __version__, batches, checkpoint, decode, runs, threads
from .config import RunConfig, as_asked, epochs_for, fit_problems, steps_per_epoch
from .data import TEST_X, TRAIN_X, TimitData, utterances
from .device import AUTOCASTS, Autocast, autocast, fits, free_memory, gpu_line, keep_freed_memory, resolve_device
from .errors import PhonetuiError, one_line
from .events import (BestSaved, Cancelled, EpochEnd, Failed, Finished, Listener, Outcome, Progress, RunStarted,
                     StopFlag, WithinEpoch, stop_flag)
from .evaluation import posteriors, score
from .fileio import write_text
from .checkpoint import TrainingState
from .recorder import Recorder
from .runs import EpochMetrics, Run, RunRecord, StepPoint
from .step import Plan, Step, plan

PROGRESS_EVERY_S = 0.25  # a Progress event: the frames done (no read off the device)
POINT_EVERY_S = 2.0  # a StepPoint (steps.csv, the charts, TensorBoard): the running loss and accuracy,
# one host read between two steps; at most 1,800 lines an hour of training


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


@dataclass(frozen=True)
class Setup:
    """What a run trains on, decided once before its first batch (train and resume alike)."""

    device: torch.device
    plan: Plan  # precision, fused Adam, compile, capture, each with its reason
    gov: threads.Governor  # CPU threads
    n_train: int
    n_val: int


def _prepare(cfg: RunConfig, data: TimitData, sampler: threads.CpuSampler, fused: bool,
             cast: Autocast | None = None, sizes: tuple[int, int] | None = None) -> Setup:
    """Check the config against the data and the device, and decide device, precision, residency
    and threads (`cast`: a resumed run's own precision, as it recorded it; `sizes`: (train, val)
    rows where the caller has checked them already)."""
    n_train, n_val = sizes or _check(cfg, data)
    t = cfg.training
    device = resolve_device(t.device)
    _check_fits_memory(cfg, data.width, device)
    resident = device.type == "cpu" or fits(data.train_x[:n_train].nbytes, device)
    p = plan(cfg, device, cast or autocast(t.precision, device, t.batch_size), resident, fused)
    seq = cfg.model.sequence
    frames = t.batch_size * (n_train / max(data.train_units(t.val_ratio, seq), 1) if seq else 1)
    gov = threads.Governor(t.threads, cfg.model.param_count(data.width) * frames, torch.set_num_threads, sampler)
    return Setup(device, p, gov, n_train, n_val)


def _recorded_autocast(info: RunRecord) -> Autocast:
    """The autocast a run trained with, from its record (runs before fp16 recorded bf16_autocast)."""
    kind = info.autocast or ("bf16" if info.bf16_autocast else "off")
    return Autocast(kind if kind in AUTOCASTS else "off")


def train(cfg: RunConfig, data: TimitData, runs_dir: Path, listen: Listener = lambda e: None,
          cancel: StopFlag | threading.Event | None = None, fused: bool = True) -> Run:
    """Train one run to the end, to cancellation, or to failure (then raises PhonetuiError).

    Emits RunStarted, Progress, EpochEnd, BestSaved and one of Finished / Cancelled / Failed.
    `fused=False` turns fused Adam off (the bench measures what it buys).
    """
    sampler = threads.CpuSampler()  # the machine's load, looked at while the run is set up
    asked = cfg.training.epochs
    cfg = cfg.with_training(epochs=epochs_for(cfg.training, data.train_units(cfg.training.val_ratio, cfg.model.sequence)))
    s = _prepare(cfg, data, sampler, fused)
    record = {"data": str(data.path.resolve()), "demo_data": data.demo or "none", "train_rows": s.n_train,
              "val_rows": s.n_val, "device": str(s.device), **s.plan.record(),
              **({"epochs_asked": asked} if cfg.training.epochs != asked else {}),
              "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              "phonetui": __version__, "torch": torch.__version__, "numpy": np.__version__,
              "python": platform.python_version(), **s.gov.record()}
    run = runs.create(runs_dir, cfg, record)
    return _run(cfg, data, run, s, listen, stop_flag(cancel), None)


def resume(run: Run, data: TimitData, listen: Listener = lambda e: None,
           cancel: StopFlag | threading.Event | None = None, fused: bool = True, epochs: int | None = None) -> Run:
    """Continue a stopped or interrupted run from the end of its last saved epoch (last.pt): same
    folder, its metrics continued; on the same device the result matches an uninterrupted run.

    `epochs`: train on to this many epochs in all (a finished run too), trained as given (min_steps
    off), written to its config.toml. A cosine schedule then spans the new total from the step it
    reached, so its rate rises again at the resume: the run's status message says so."""
    run.refuse_if_imported("resume")
    if run.state == "running" or (run.state == "finished" and epochs is None):
        raise PhonetuiError(f"{run.path}: {run.state}, nothing to resume"
                            + (" (the training process is still alive)" if run.state == "running" else
                               " (train it on with more epochs: --epochs N)"))
    sampler = threads.CpuSampler()
    state = checkpoint.load_state(run)
    cfg = run.config if epochs is None else run.config.with_training(**as_asked({"epochs": epochs}))
    n_train, n_val = _check(cfg, data)
    info = run.info
    if (n_train, n_val) != (info.train_rows, info.val_rows):
        raise PhonetuiError(f"{data.path}: not the data {run.id} trained on ({n_train:,} train / {n_val:,} val rows "
                            f"here, {info.train_rows} / {info.val_rows} in the run)")
    cpu = torch.device("cpu")
    trial = Step(cfg, data.width, cpu, 1, plan(cfg, cpu, Autocast(), True))
    checkpoint.check_state(run, state, trial.model, trial.opt, data.width)  # before anything about the run changes
    done, before = state["epoch"], run.config.training.epochs
    message = f"resumed after epoch {done}"
    if epochs is not None:
        if epochs <= done:
            raise PhonetuiError(f"--epochs {epochs}: {run.id} has trained {done} epochs; give more to train on")
        if epochs != before:
            message += f", epochs {before} -> {epochs}" + (f" (its cosine schedule now spans {epochs})"
                                                            if cfg.training.schedule == "cosine" else "")
    s = _prepare(cfg, data, sampler, fused, _recorded_autocast(info), (n_train, n_val))
    run.acquire()
    try:  # (the record's threads follow in the loop: Recorder.ran)
        if cfg != run.config:  # the new total, in config.toml before the run trains towards it
            run.config = cfg
            run.record.pop("epochs_asked", None)  # min_steps no longer decides them
            run.update_record()
        run.write_status(status="running", pid=os.getpid(), ended="", outcome=Outcome.RUNNING, message=message)
    except BaseException:
        run.release()
        raise
    return _run(cfg, data, run, s, listen, stop_flag(cancel), state)


def _run(cfg: RunConfig, data: TimitData, run: Run, s: Setup, listen: Listener, cancel: StopFlag,
         saved: dict | None) -> Run:
    """The loop, with every way it can end recorded in the run's status."""
    keep_freed_memory()
    try:
        listen(RunStarted(run, f"{s.device}{s.plan.autocast.label()}, {threads.count(s.gov.threads)}", s.n_train,
                          s.n_val))
        early = _loop(cfg, data, run, s, listen, cancel, saved)
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
    reason, outcome = cancel.why() if cancel.is_set() else ("", Outcome.STOPPED)
    run.write_status(status="stopped", ended=time.strftime("%Y-%m-%d %H:%M:%S"),
                     message=reason or said or "stopped by the user", outcome=outcome, **_on_disk(run))
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


def _loop(cfg: RunConfig, data: TimitData, run: Run, s: Setup, listen: Listener, cancel: StopFlag,
          saved: dict | None) -> bool:
    """Train to the last epoch (from where last.pt `saved` left it); True when patience ended it early."""
    t = cfg.training
    torch.manual_seed(t.seed)
    gen = torch.Generator().manual_seed(t.seed)
    train_set, val_set, val_starts = _sources(cfg, data, s)
    trans = decode.of_training(data, s.n_train) if t.decode == "viterbi" else None
    step = Step(cfg, data.width, s.device, steps_per_epoch(t.batch_size, train_set.units) * t.epochs, s.plan)
    step.try_compile(next(train_set.ordered(t.batch_size)).inputs)
    rec = Recorder(run, cfg, data.width, step, gen, s.gov)
    state = rec.restore(saved, listen)

    def point(p: StepPoint) -> None:
        rec.point(p)
        listen(WithinEpoch(p))

    for epoch in range(state.epoch + 1, t.epochs + 1):
        start, lr = time.perf_counter(), step.current_lr()  # a cosine run's last epoch does not train at lr 0
        _train_epoch(cfg, step, train_set, gen, s, epoch, point, listen, cancel)
        rec.ran()
        train_acc, train_loss = step.totals()
        scores = (score(*posteriors(step.model, val_set, s.device, s.plan.dtype), val_set.y, val_starts, t.smooth,
                        trans) if val_set.rows else None)
        raw = scores.raw_acc if scores and (t.smooth > 1 or trans is not None) else None
        improved = scores is None or scores.acc > state.best
        gain = rec.gain(scores) if improved else None
        m = EpochMetrics(epoch, train_acc, train_loss, scores and scores.acc, scores and scores.loss, lr,
                         time.perf_counter() - start, raw, gain and gain.lo, gain and gain.hi)
        rec.metrics(m)
        listen(EpochEnd(m, t.epochs))
        if improved:
            last_best = state.epoch - state.since_best if gain else None
            listen(BestSaved(epoch, m.val_acc, rec.best(epoch, m.val_acc, scores), gain, last_best))
        state = TrainingState(epoch, (train_acc if m.val_acc is None else m.val_acc) if improved else state.best,
                              0 if improved else state.since_best + 1)
        rec.epoch_done(state, improved, m.val_acc)
        if t.patience and m.val_acc is not None and state.since_best >= t.patience:
            rec.early(epoch)
            return True
    return False


def _sources(cfg: RunConfig, data: TimitData, s: Setup):
    """(training rows, validation rows, the validation utterances' starts) on the training device."""
    starts = data.utterance_starts
    train_set = batches.source(cfg.model, data.train_x[:s.n_train], data.train_y[:s.n_train],
                               utterances.within(starts, 0, s.n_train), s.device)
    val_starts = utterances.within(starts, s.n_train, len(data.train_x))
    val_set = batches.source(cfg.model, data.train_x[s.n_train:], data.train_y[s.n_train:], val_starts, s.device)
    return train_set, val_set, val_starts


def _train_epoch(cfg: RunConfig, step: Step, train_set, gen: torch.Generator, s: Setup, epoch: int,
                 point: Callable[[StepPoint], None], listen: Listener, cancel: StopFlag) -> None:
    """One pass over the training rows: the cancel flag checked and the threads governed between
    batches, Progress a few times a second, a StepPoint (`point`) every POINT_EVERY_S."""
    t = cfg.training
    start = last_report = last_point = time.perf_counter()
    seen = (0, 0.0, 0.0)  # (frames, correct, loss sum) of the epoch at the last point
    means: tuple[float | None, float | None] = (None, None)  # the epoch's running (loss, accuracy)
    step.model.train()
    for idx in train_set.epoch(t.batch_size, gen):
        if cancel.is_set():
            raise _Stop
        if cfg.model.batchnorm and len(idx) < 2:
            continue
        step(train_set, idx)
        now = time.perf_counter()
        s.gov.tick(time.monotonic())
        if now - last_point >= POINT_EVERY_S:
            last_point, (frames, correct, loss) = now, step.running()
            if frames > seen[0]:
                n = frames - seen[0]
                point(StepPoint(epoch, epoch - 1 + min(frames / s.n_train, 1.0), step.count, (loss - seen[2]) / n,
                                (correct - seen[1]) / n, step.current_lr()))
                seen, means = (frames, correct, loss), (loss / frames, correct / frames)
        if now - last_report >= PROGRESS_EVERY_S:
            last_report = now
            listen(Progress(epoch, t.epochs, step.frames, s.n_train, step.frames / (now - start), gpu_line(s.device),
                            *means))
