"""A model's outputs over a split: posteriors, smoothing inside utterances, accuracy, loss, confusions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import noise
from .batches import Frames, Utterances
from .config import N_CLASSES

EVAL_FRAMES = 8192  # frames per evaluation batch


@dataclass(frozen=True)
class Scores:
    acc: float  # of the scored predictions: smoothed when smooth > 1, decoded when decode = "viterbi"
    raw_acc: float  # of the model's own per-frame predictions (no smoothing, no decoding)
    loss: float  # mean cross-entropy of the raw logits
    confusion: np.ndarray  # (39, 39) frame counts, true class x scored prediction
    decoder: tuple[float, float] | None = None  # the Viterbi (scale, loop) tuned on these labels (decode = "viterbi")
    counts: noise.Counts | None = None  # frames and correct (scored) frames of each utterance: its interval


@torch.inference_mode()
def posteriors(model: torch.nn.Module, source: Frames | Utterances, device: torch.device,
               dtype: torch.dtype | None = None) -> tuple[torch.Tensor, float | None]:
    """(softmax posteriors (rows, 39) on the device in row order, mean cross-entropy or None without labels),
    matmuls under autocast to `dtype` where one is given. Batches are large and nothing is read back
    to the host until the end."""
    model.eval()
    probs = torch.empty((source.rows, N_CLASSES), device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    for b in source.ordered(EVAL_FRAMES):
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            logits = model(*b.inputs).float()
        probs[b.rows.to(device)] = logits.softmax(1)
        if b.y is not None:
            loss_sum += F.cross_entropy(logits, b.y, reduction="sum").double()
    return probs, (loss_sum.item() / max(source.rows, 1) if source.y is not None else None)


def smooth(probs: torch.Tensor, starts: np.ndarray, k: int) -> torch.Tensor:
    """Each frame's posteriors averaged over the k frames centred on it, within its utterance
    (fewer at the utterance's ends); k = 1 returns probs unchanged."""
    if k <= 1:
        return probs
    n, half = len(probs), k // 2
    cum = torch.cat([torch.zeros((1, probs.shape[1]), dtype=torch.float64, device=probs.device),
                     probs.double().cumsum(0)])
    s = torch.as_tensor(np.asarray(starts, np.int64), device=probs.device)
    i = torch.arange(n, device=probs.device)
    utt = torch.searchsorted(s, i, right=True) - 1
    ends = torch.cat([s[1:], torch.tensor([n], device=probs.device)])
    lo = torch.maximum(s[utt], i - half)
    hi = torch.minimum(ends[utt], i + half + 1)
    return ((cum[hi] - cum[lo]) / (hi - lo)[:, None]).float()


def score(probs: torch.Tensor, loss: float, y: torch.Tensor, starts: np.ndarray, k: int,
          transitions: torch.Tensor | None = None) -> Scores:
    """Accuracy with and without smoothing over k frames (and Viterbi decoding with `transitions`,
    its scale and duration term tuned on these labels: Scores.decoder), loss, and the confusion matrix."""
    from . import decode

    y = y.to(probs.device)
    raw = probs.argmax(1)
    smoothed = smooth(probs, starts, k) if k > 1 else probs
    decoder = None
    if transitions is not None:
        scale, loop, _ = decode.tune(smoothed, y, starts, transitions, decode.EPOCH_TUNING)
        decoder = scale, loop
        pred = decode.viterbi(smoothed, starts, transitions, scale, loop)
    else:
        pred = smoothed.argmax(1) if k > 1 else raw
    confusion = torch.bincount(y * N_CLASSES + pred, minlength=N_CLASSES**2).reshape(N_CLASSES, N_CLASSES)
    n, hits = max(len(y), 1), (pred == y)
    return Scores(hits.sum().item() / n, (raw == y).sum().item() / n, loss, confusion.cpu().numpy(), decoder,
                  noise.counts(hits.cpu().numpy(), starts))
