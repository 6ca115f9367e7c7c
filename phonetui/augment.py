"""Training-time augmentation of a tagger's padded utterances (B, T, D), D = 39 per frame (or 429).

SpecAugment-style masks, and vocal tract length perturbation (VTLP) done on the cepstra: the
course's 39 values are 13 MFCCs with deltas and delta-deltas, all linear in the log mel spectrum,
so warping that spectrum along frequency is one 13 x 13 matrix per utterance. Everything is drawn
and computed on the batch's device, batched over its utterances.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from .config import FRAME_DIM
from .data import frames


def spans(lengths: torch.Tensor, count: int, widest: int, size: int) -> torch.Tensor:
    """(B, size) mask, True in `count` spans of random width 0..widest placed inside each row's
    length; drawn on the lengths' device, with no host sync."""
    dev = lengths.device
    width = torch.randint(0, widest + 1, (len(lengths), count), device=dev)
    start = (torch.rand(len(lengths), count, device=dev) * (lengths[:, None] - width + 1).clamp(min=1)).long()
    t = torch.arange(size, device=dev)[None, None, :]
    return ((t >= start[..., None]) & (t < (start + width)[..., None])).any(1)


def spec_augment(x: torch.Tensor, lengths: torch.Tensor, time_mask: int, feature_mask: int) -> torch.Tensor:
    """Spans of up to `time_mask` frames (one per 50 frames of the longest) and 2 bands of up to
    `feature_mask` of each frame's 39 values (in every frame of a window) set to 0, the mean of
    normalised features."""
    lengths = lengths.to(x.device)
    if time_mask:
        x = x * ~spans(lengths, max(1, x.shape[1] // 50), time_mask, x.shape[1])[:, :, None]
    if feature_mask:
        bands = spans(torch.full_like(lengths, FRAME_DIM), 2, feature_mask, FRAME_DIM)
        x = x * ~bands.repeat(1, x.shape[2] // FRAME_DIM)[:, None, :]
    return x


WARP_HZ = (500, 3000)  # where a warp's two factors apply: the first formant's range, the third's


@functools.cache
def _bands(device: torch.device) -> tuple[torch.Tensor, ...]:
    """Band centres in Hz and mel, the two warp knots in mel, the liftered DCT and its
    pseudo-inverse (cepstra back to log mel energies), as tensors on `device`."""
    hz, dct = frames.mel_edges()[1:-1], frames.cepstra()
    dtype = torch.float32 if device.type == "mps" else torch.float64
    return tuple(torch.as_tensor(a, dtype=dtype, device=device) for a in
                 (hz, frames.mel(hz), frames.mel(np.array(WARP_HZ, dtype=float)), dct, np.linalg.pinv(dct)))


def warp_matrices(low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """(B, 13, 13) maps of the statics c0..c12 to those of the same log mel spectrum warped along
    frequency, one per pair of factors: stretched by `low` up to WARP_HZ[0] and by `high` from
    WARP_HZ[1], the log factor linear in mel between (> 1 moves formants up, as a shorter vocal
    tract does; speakers differ in each formant's scale). Back to the mel bands through the DCT's
    pseudo-inverse, each band read where the warp takes it from, and forward again. Batched on the
    factors' device."""
    hz, mels, knots, dct, back = _bands(low.device)
    low, high = low.to(hz.dtype)[:, None], high.to(hz.dtype)[:, None]
    w = ((mels - knots[0]) / (knots[1] - knots[0])).clamp(0, 1)
    factor = torch.exp((1 - w) * low.log() + w * high.log())
    source = torch.cummax((hz / factor).clamp(hz[0], hz[-1]), 1).values
    at = 2595 * torch.log10(1 + source / 700)
    below = (torch.searchsorted(mels, at.contiguous(), right=True) - 1).clamp(0, frames.N_MELS - 2)
    pos = below + (at - mels[below]) / (mels[below + 1] - mels[below])
    frac = (pos - below)[..., None]
    resample = (F.one_hot(below, frames.N_MELS) * (1 - frac) + F.one_hot(below + 1, frames.N_MELS) * frac)
    return (dct @ resample @ back).float()


def spread(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded utterances (B, T, D) less each one's mean (padding stays 0), and each one's
    standard deviation (B, 1, D) over its real frames (`mask`, (B, T, 1))."""
    n = mask.sum(1, keepdim=True).to(x.dtype)
    centred = (x - x.sum(1, keepdim=True) / n) * mask
    return centred, (centred.square().sum(1, keepdim=True) / n).sqrt()


def vtlp(x: torch.Tensor, mask: torch.Tensor, warp: float) -> torch.Tensor:
    """Each utterance's statics, deltas and delta-deltas (in every frame of a window) mapped by a
    warp_matrices map whose two factors are drawn independently, log-uniform in [1 / (1 + warp), 1 + warp];
    then each value rescaled to its old spread over the utterance (rows are normalised per
    utterance); padding (False in `mask`, (B, T, 1)) stays 0."""
    b, t, d = x.shape
    factors = ((torch.rand(b, 2, device=x.device) * 2 - 1) * np.log1p(warp)).exp()
    maps = warp_matrices(factors[:, 0], factors[:, 1]).to(x)
    y = torch.einsum("btgc,bdc->btgd", x.reshape(b, t, d // frames.N_STATIC, frames.N_STATIC), maps).reshape(b, t, d)
    (_, xs), (yc, ys) = spread(x, mask), spread(y, mask)
    return (y - yc) + yc * (xs / (ys + 1e-6))
