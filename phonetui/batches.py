"""Batches for training, evaluation and prediction: rows for frame models, utterances for taggers.

A Batch is (inputs, y, rows): `model(*inputs)` returns logits for the split's rows `rows`, in that
order, and `y` holds their labels (None for unlabelled test rows). This is the one place where
"one row in, one label out" and "one utterance in, its labels out" differ. A training epoch is a
sequence of index tensors (`epoch`) that the step turns into batches (`take`), so a captured step
can gather its own batch; evaluation reads `ordered` batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .config import FRAME_DIM, ModelConfig
from .device import to_device
from .models import frame_positions

CENTRE = slice(5 * FRAME_DIM, 6 * FRAME_DIM)  # the centre frame's 39 values in an 11-frame row
POOL = 64  # a shuffled epoch sorts utterances by length within pools of POOL batches


@dataclass(frozen=True)
class Batch:
    inputs: tuple[torch.Tensor, ...]
    y: torch.Tensor | None
    rows: torch.Tensor  # positions in the split of the frames the logits are for


class Frames:
    """Rows of an 11-frame window each, index-selected where the data lives (the GPU when it fits)."""

    def __init__(self, x: np.ndarray, y: np.ndarray | None, device: torch.device) -> None:
        self.x = to_device(x, device)
        self.y = None if y is None else torch.from_numpy(y).to(self.x.device)
        self.device = device
        self.rows = self.units = len(x)

    def take(self, idx: torch.Tensor) -> Batch:
        """The rows `idx` (on the data's device) as a batch on the training device."""
        xb = self.x.index_select(0, idx).to(self.device, non_blocking=True)
        yb = None if self.y is None else self.y.index_select(0, idx).to(self.device, non_blocking=True)
        return Batch((xb,), yb, idx)

    def epoch(self, batch_size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
        """Shuffled row indices, batch_size at a time (the last batch may be short)."""
        perm = torch.randperm(self.rows, generator=gen).to(self.x.device)
        yield from perm.split(batch_size)

    def frames_in(self, idx: torch.Tensor) -> int:
        return len(idx)

    def ordered(self, batch_size: int) -> Iterator[Batch]:
        for lo in range(0, self.rows, batch_size):
            hi = min(lo + batch_size, self.rows)
            xb = self.x[lo:hi].to(self.device, non_blocking=True)
            yb = None if self.y is None else self.y[lo:hi].to(self.device, non_blocking=True)
            yield Batch((xb,), yb, torch.arange(lo, hi))


class Utterances:
    """Whole utterances, zero-padded to the longest in the batch, with their lengths.

    `starts` are the utterances' first rows within x. Inputs are each row's centre frame (a compact
    copy, on the device when it fits) or its whole window (read from x as it lies).
    """

    def __init__(self, x: np.ndarray, y: np.ndarray | None, starts: np.ndarray, model: ModelConfig,
                 device: torch.device) -> None:
        feats = np.ascontiguousarray(x[:, CENTRE]) if model.input == "centre" else x
        self.x = to_device(feats, device)
        self.y = None if y is None else torch.from_numpy(y).to(self.x.device)
        self.starts = torch.from_numpy(np.asarray(starts, np.int64))
        self.lengths = torch.diff(self.starts, append=torch.tensor([len(x)]))
        self.device = device
        self.rows, self.units = len(x), len(starts)

    def take(self, ids: torch.Tensor) -> Batch:
        """The utterances `ids` zero-padded into a batch; index tensors are built on the host from the
        lengths and moved once, so nothing on the device is indexed by a mask or read back."""
        lengths = self.lengths[ids]
        steps = torch.arange(int(lengths.max()))
        mask = steps[None, :] < lengths[:, None]
        idx = torch.where(mask, self.starts[ids][:, None] + steps[None, :], 0)
        xb = (self.x[idx.to(self.x.device)] * mask.to(self.x.device).unsqueeze(-1)).to(self.device, non_blocking=True)
        rows = idx[mask]
        yb = None if self.y is None else self.y[rows.to(self.x.device)].to(self.device, non_blocking=True)
        where = frame_positions(lengths, len(steps)).to(self.device, non_blocking=True)
        return Batch((xb, lengths.to(self.device, non_blocking=True), where), yb, rows)

    def frames_in(self, ids: torch.Tensor) -> int:
        return int(self.lengths[ids].sum())

    def epoch(self, batch_size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
        """Shuffled batches of utterances of similar length (little padding), in shuffled order."""
        perm = torch.randperm(self.units, generator=gen)
        batches = []
        for lo in range(0, self.units, batch_size * POOL):
            pool = perm[lo:lo + batch_size * POOL]
            pool = pool[torch.argsort(self.lengths[pool], stable=True)]
            batches += list(pool.split(batch_size))
        for i in torch.randperm(len(batches), generator=gen).tolist():
            yield batches[i]

    def ordered(self, batch_size: int) -> Iterator[Batch]:
        """Every utterance once, longest first, batch_size frames' worth of utterances at a time."""
        order = torch.argsort(self.lengths, descending=True, stable=True)
        lo = 0
        while lo < self.units:
            n = max(1, batch_size // int(self.lengths[order[lo]]))
            yield self.take(order[lo:lo + n])
            lo += n


def source(model: ModelConfig, x: np.ndarray, y: np.ndarray | None, starts: np.ndarray,
           device: torch.device) -> Frames | Utterances:
    """The batches a model of this kind reads from rows x (with labels y, utterances at `starts`)."""
    return Utterances(x, y, starts, model, device) if model.sequence else Frames(x, y, device)
