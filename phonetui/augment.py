"""Training-time augmentation of a tagger's padded utterances (B, T, D), D = 39 per frame (or 429).

SpecAugment-style masks, and vocal tract length perturbation (VTLP) done on the cepstra: the
course's 39 values are 13 MFCCs with deltas and delta-deltas, all linear in the log mel spectrum,
so warping that spectrum along frequency is one 13 x 13 matrix per utterance.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from .config import FRAME_DIM
from .data import frames


def spans(lengths: torch.Tensor, count: int, widest: int, size: int | None = None) -> torch.Tensor:
    """(B, size) mask, True in `count` spans of random width 0..widest placed inside each row's length
    (`size`: the mask's width, by default the longest length)."""
    size = size or int(lengths.max())
    width = torch.randint(0, widest + 1, (len(lengths), count))
    start = (torch.rand(len(lengths), count) * (lengths[:, None] - width + 1).clamp(min=1)).long()
    t = torch.arange(size)[None, None, :]
    return ((t >= start[..., None]) & (t < (start + width)[..., None])).any(1)


def spec_augment(x: torch.Tensor, lengths: torch.Tensor, time_mask: int, feature_mask: int) -> torch.Tensor:
    """Spans of up to `time_mask` frames (one per 50 frames of the longest) and 2 bands of up to
    `feature_mask` of each frame's 39 values (in every frame of a window) set to 0, the mean of
    normalised features; `lengths` on the CPU."""
    if time_mask:
        gaps = spans(lengths, max(1, x.shape[1] // 50), time_mask, x.shape[1])
        x = x * ~gaps.to(x.device)[:, :, None]
    if feature_mask:
        bands = spans(torch.full((x.shape[0],), FRAME_DIM), 2, feature_mask)
        x = x * ~bands.repeat(1, x.shape[2] // FRAME_DIM).to(x.device)[:, None, :]
    return x


WARP_HZ = (500, 3000)  # where a warp's two factors apply: the first formant's range, the third's


@functools.cache
def _bands() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Band centres in Hz and mel, the liftered DCT and its pseudo-inverse (cepstra back to log mel energies)."""
    hz, dct = frames.mel_edges()[1:-1], frames.cepstra()
    return hz, frames.mel(hz), dct, np.linalg.pinv(dct)


def warp_matrix(low: float, high: float | None = None) -> np.ndarray:
    """(13, 13) map of the statics c0..c12 to those of the same log mel spectrum warped along
    frequency: stretched by `low` up to WARP_HZ[0] and by `high` (default: `low`) from WARP_HZ[1],
    the log factor linear in mel between (> 1 moves formants up, as a shorter vocal tract does;
    speakers differ in each formant's scale). Back to the mel bands through the DCT's pseudo-inverse,
    each band read where the warp takes it from, and forward again."""
    hz, mels, dct, back = _bands()
    knots = frames.mel(np.array(WARP_HZ, dtype=float))
    factor = np.exp(np.interp(mels, knots, np.log([low, low if high is None else high])))
    source = np.maximum.accumulate(np.clip(hz / factor, hz[0], hz[-1]))
    pos = np.interp(frames.mel(source), mels, np.arange(frames.N_MELS))
    below = np.minimum(pos.astype(int), frames.N_MELS - 2)
    resample = np.zeros((frames.N_MELS, frames.N_MELS))
    rows = np.arange(frames.N_MELS)
    resample[rows, below], resample[rows, below + 1] = 1 - (pos - below), pos - below
    return (dct @ resample @ back).astype(np.float32)


def spread(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded utterances (B, T, D) less each one's mean (padding stays 0), and each one's
    standard deviation (B, 1, D) over its real frames (`mask`, (B, T, 1))."""
    n = mask.sum(1, keepdim=True).to(x.dtype)
    centred = (x - x.sum(1, keepdim=True) / n) * mask
    return centred, (centred.square().sum(1, keepdim=True) / n).sqrt()


def vtlp(x: torch.Tensor, mask: torch.Tensor, warp: float) -> torch.Tensor:
    """Each utterance's statics, deltas and delta-deltas (in every frame of a window) mapped by a
    warp_matrix whose two factors are drawn independently, log-uniform in [1 / (1 + warp), 1 + warp];
    then each value rescaled to its old spread over the utterance (rows are normalised per
    utterance); padding (False in `mask`, (B, T, 1)) stays 0."""
    b, t, d = x.shape
    factors = ((torch.rand(b, 2) * 2 - 1) * np.log1p(warp)).exp().tolist()
    maps = torch.from_numpy(np.stack([warp_matrix(low, high) for low, high in factors])).to(x)
    y = torch.einsum("btgc,bdc->btgd", x.reshape(b, t, d // frames.N_STATIC, frames.N_STATIC), maps).reshape(b, t, d)
    (_, xs), (yc, ys) = spread(x, mask), spread(y, mask)
    return (y - yc) + yc * (xs / (ys + 1e-6))
