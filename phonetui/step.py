"""The training step as one object: model, loss, optimizer, learning-rate schedule, precision,
torch.compile and CUDA-graph capture, decided in one place and recorded with the run.

Capture-safe on every device: the learning rate lives in a tensor on the device that the
schedule writes, loss and accuracy add up on the device and are read between steps every few
seconds (`running`) and at the epoch's end (`totals`), and a step makes no host sync. On CUDA a frame model's whole step (the batch gathered from device-resident
rows, forward, loss, backward, Adam) can be captured once as a CUDA graph and replayed for every
full batch; the epoch's short last batch runs through the same step uncaptured, so results are
those of the eager step. Whatever cannot run as asked falls back, and `Plan.notes` says why.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from . import models
from .batches import Batch, Frames, Utterances
from .config import RunConfig
from .device import Autocast
from .errors import first_line

WARMUP = 3  # eager steps on a side stream before capture (the allocator and cuBLAS settle)


@dataclass(frozen=True)
class Plan:
    """What the step runs: recorded in the run's config.toml, with the reason for every choice."""

    autocast: Autocast  # the dtype matmuls run in (and whether a GradScaler scales the loss)
    tf32: bool  # fp32 matmuls as TF32 (CUDA)
    fused: bool  # fused Adam/AdamW kernels
    compile: bool  # torch.compile asked for and possible (it may still fall back when tried)
    capture: bool  # CUDA-graph capture asked for and possible (likewise)
    notes: tuple[str, ...] = ()

    def record(self) -> dict[str, Any]:
        return {"autocast": self.autocast.kind, "grad_scaler": self.autocast.scaler, "tf32": self.tf32,
                "fused_adam": self.fused, "compile": self.compile, "capture": self.capture,
                "step_notes": list(self.notes)}

    @property
    def dtype(self) -> torch.dtype | None:
        return self.autocast.dtype


def plan(cfg: RunConfig, device: torch.device, cast: Autocast, resident: bool, fused: bool = True) -> Plan:
    """Decide the step's fast paths for this run on this device (see Plan); `resident`: whether the
    training rows live on the device (capture gathers batches inside the graph)."""
    t, notes = cfg.training, [cast.why] if cast.why else []
    tf32 = device.type == "cuda" and t.precision != "fp32"
    if t.precision == "tf32" and device.type != "cuda":
        notes.append(f"precision: tf32 runs as fp32 on {device.type} (TF32 is a CUDA matmul mode)")
    fused = fused and device.type in ("cuda", "cpu")
    compile_ = t.compile == "on"
    if t.compile == "auto":
        notes.append("compile: off (auto: it has not paid off yet where measured)")
    capture = t.capture == "on"
    why = ("CUDA graphs need a CUDA device" if device.type != "cuda" else
           "a tagger's batches change shape with their utterances" if cfg.model.sequence else
           "the training rows do not fit on the device" if not resident else
           "fp16's GradScaler checks every step's gradients on the host and skips the step where they overflow; "
           "PyTorch keeps its step and update outside a graph" if cast.scaler else "")
    if t.capture == "auto":
        notes.append("capture: off (auto: on only once bench/gpu_check.sh has passed on a GPU)")
    elif capture and why:
        capture = False
        notes.append(f"capture: off ({why}; this run is on {device})" if device.type != "cuda" else f"capture: off ({why})")
    return Plan(cast, tf32, fused, compile_, capture, tuple(notes))


class Step:
    """One optimizer step over a batch of a source, as Plan says; `totals()` reads the epoch's sums."""

    def __init__(self, cfg: RunConfig, width: int, device: torch.device, steps_total: int, p: Plan) -> None:
        t = cfg.training
        self.cfg, self.device, self.plan, self.steps_total = cfg, device, p, steps_total
        self.notes = list(p.notes)
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = p.tf32
        self.model = models.build(cfg.model, width).to(device)
        self.forward: torch.nn.Module = self.model
        self.lr = torch.tensor(t.lr, dtype=torch.float32, device=device)  # written by the schedule, read by Adam
        opt_cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
        extra = {"fused": True} if p.fused else {}
        if p.capture:
            extra["capturable"] = True
        self.opt = opt_cls(self.model.parameters(), lr=self.lr, weight_decay=t.weight_decay, **extra)
        # fp16: the loss scaled up before backward, the gradients unscaled in the (fused) optimizer step,
        # a step with inf/NaN gradients skipped and the scale lowered; weights and Adam state stay fp32
        self.scaler = torch.amp.GradScaler(device.type) if p.autocast.scaler else None
        self.count = 0  # optimizer steps taken: the schedule's position
        self.correct = torch.zeros((), dtype=torch.long, device=device)
        self.loss_sum = torch.zeros((), dtype=torch.float32, device=device)
        self.frames = 0
        self._graph: torch.cuda.CUDAGraph | None = None
        self._capture, self._warm, self._idx, self._side = p.capture, 0, None, None

    def record(self) -> dict[str, Any]:
        """What actually runs (Plan.record, less whatever fell back since)."""
        return self.plan.record() | {"compile": self.forward is not self.model, "capture": self._capture,
                                     "step_notes": list(self.notes)}

    def factor(self, step: int) -> float:
        """The schedule: the learning rate of optimizer step `step` (0-based) over the base rate."""
        if self.cfg.training.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * step / self.steps_total))
        return 1.0

    def current_lr(self) -> float:
        """The rate the next step trains with."""
        return self.cfg.training.lr * self.factor(self.count)

    def try_compile(self, example: tuple[torch.Tensor, ...]) -> None:
        """torch.compile the model, tried once on `example` inputs without side effects (weights,
        BatchNorm statistics and RNG restored); eager, with the reason noted, where it fails."""
        if not self.plan.compile:
            return
        state = copy.deepcopy(self.model.state_dict())
        try:
            with torch.random.fork_rng(devices=[example[0].device] if example[0].is_cuda else []):
                compiled = torch.compile(self.model)
                compiled(*example).float().sum().backward()
            self.forward = compiled
        except Exception as e:  # noqa: BLE001 - no compiler, unsupported backend: eager still trains
            self.notes.append(f"compile: off (torch.compile failed: {first_line(e, 160)})")
        finally:
            self.model.load_state_dict(state)
            self.model.zero_grad(set_to_none=True)

    def __call__(self, source: Frames | Utterances, idx: torch.Tensor) -> None:
        """One step over the batch `idx` of `source` (rows, or utterances for a tagger)."""
        if self.cfg.training.schedule != "constant":
            self.lr.fill_(self.current_lr())
        full = len(idx) == self.cfg.training.batch_size
        if self._graph is not None and full:
            self._idx.copy_(idx, non_blocking=True)
            self._graph.replay()
        elif self._capture and full:
            self._warm_or_capture(source, idx)
        else:
            self._eager(source.take(idx))
        self.count += 1
        self.frames += source.frames_in(idx)

    def _body(self, inputs: tuple[torch.Tensor, ...], y: torch.Tensor, cache: bool = True) -> None:
        dtype = self.plan.dtype
        with torch.autocast(self.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None,
                            cache_enabled=cache):
            logits = self.forward(*inputs)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=self.cfg.training.label_smoothing)
        self.opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            loss.backward()
            self.opt.step()
        self.loss_sum += loss.detach() * len(y)
        self.correct += (logits.argmax(1) == y).sum()

    def _eager(self, b: Batch) -> None:
        self._body(b.inputs, b.y)

    def _warm_or_capture(self, source: Frames, idx: torch.Tensor) -> None:
        """WARMUP eager steps on a side stream, then capture the step (gather included) and replay it;
        a capture that fails leaves the eager step, with the reason noted."""
        side = self._side = self._side or torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            if self._warm < WARMUP:
                self._warm += 1
                self._eager(source.take(idx))
            else:
                self._idx = idx.clone()
                graph = torch.cuda.CUDAGraph()
                try:
                    self.opt.zero_grad(set_to_none=True)
                    with torch.cuda.graph(graph, capture_error_mode="thread_local"):  # other runs may train meanwhile
                        self._body((source.x.index_select(0, self._idx),), source.y.index_select(0, self._idx), False)
                    self._graph = graph
                except Exception as e:  # noqa: BLE001 - any capture failure: eager still trains
                    self._capture = False
                    self.notes.append(f"capture: off (CUDA-graph capture failed: {first_line(e, 160)})")
                    torch.cuda.synchronize(self.device)
                    self._eager(source.take(idx))
        torch.cuda.current_stream(self.device).wait_stream(side)
        if self._graph is not None:
            self._graph.replay()

    def running(self) -> tuple[int, float, float]:
        """(frames, correct, loss sum) of the epoch so far, nothing reset: one host read, a few times
        a minute at most (between steps, so a captured graph is never interrupted)."""
        correct, loss = torch.stack([self.correct.float(), self.loss_sum]).tolist()
        return self.frames, correct, loss

    def totals(self) -> tuple[float, float]:
        """(accuracy, mean loss) of the frames stepped since the last call (one host read), then reset."""
        n = max(self.frames, 1)
        acc, loss = self.correct.item() / n, self.loss_sum.item() / n
        self.correct.zero_()
        self.loss_sum.zero_()
        self.frames = 0
        return acc, loss

    def state_dict(self) -> dict[str, Any]:
        """Model, optimizer and schedule (as {"last_epoch": steps}, the shape LambdaLR saved)."""
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": {"last_epoch": self.count},
                **({"scaler": self.scaler.state_dict()} if self.scaler is not None else {})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        for group in self.opt.param_groups:  # a loaded group's lr is the saved value, not our tensor
            group["lr"] = self.lr
        self.count = int(state["scheduler"]["last_epoch"])
        if self.scaler is not None and isinstance(state.get("scaler"), dict):
            self.scaler.load_state_dict(state["scaler"])
