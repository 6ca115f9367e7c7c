"""Training-time augmentation of a tagger's padded utterances (B, T, D), D = 39 per frame (or 429).

SpecAugment-style masks, and vocal tract length perturbation (VTLP) done on the cepstra: the
course's 39 values are 13 MFCCs with deltas and delta-deltas, all linear in the log mel spectrum,
so stretching that spectrum along frequency is one 13 x 13 matrix per utterance.
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


@functools.lru_cache(maxsize=256)
def warp_matrix(factor: float) -> np.ndarray:
    """(13, 13) map of the statics c0..c12 to those of the same log mel spectrum stretched by `factor`
    along frequency (> 1: formants move up, as for a shorter vocal tract): back to the mel bands
    through the DCT's pseudo-inverse, each band read at its centre / factor, and forward again."""
    centres = frames.mel(frames.mel_edges()[1:-1])
    source = frames.mel(np.clip(frames.mel_edges()[1:-1] / factor, *frames.mel_edges()[[1, -2]]))
    pos = np.interp(source, centres, np.arange(frames.N_MELS))
    low = np.minimum(pos.astype(int), frames.N_MELS - 2)
    resample = np.zeros((frames.N_MELS, frames.N_MELS))
    rows = np.arange(frames.N_MELS)
    resample[rows, low], resample[rows, low + 1] = 1 - (pos - low), pos - low
    dct = frames.cepstra()
    return (dct @ resample @ np.linalg.pinv(dct)).astype(np.float32)


def vtlp(x: torch.Tensor, lengths: torch.Tensor, warp: float) -> torch.Tensor:
    """Each utterance's statics, deltas and delta-deltas (in every frame of a window) mapped by
    warp_matrix of a factor drawn from [1 - warp, 1 + warp], then each value rescaled to its old
    spread over the utterance (rows are normalised per utterance); padding stays 0."""
    b, t, d = x.shape
    factors = (1 + (torch.rand(b) * 2 - 1) * warp).tolist()
    maps = torch.from_numpy(np.stack([warp_matrix(round(f, 3)) for f in factors])).to(x)
    y = torch.einsum("btgc,bdc->btgd", x.reshape(b, t, d // frames.N_STATIC, frames.N_STATIC), maps).reshape(b, t, d)
    mask = (torch.arange(t, device=x.device)[None, :] < lengths.to(x.device)[:, None]).unsqueeze(-1)
    n = lengths.to(x.device, x.dtype)[:, None, None]

    def centred(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v = (v - v.sum(1, keepdim=True) / n) * mask
        return v, (v.square().sum(1, keepdim=True) / n).sqrt()

    (xc, xs), (yc, ys) = centred(x), centred(y)
    return (y - yc) + yc * (xs / (ys + 1e-6))
