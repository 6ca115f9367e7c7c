"""Models built from a ModelConfig: an MLP over each row's window, or a tagger over utterances.

Both map a batch's inputs (see phonetui.batches) to (frames, 39) logits, one row per labelled
frame in the batch's order, so the trainer, evaluation and prediction never ask which kind ran.
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn
from torch.nn import functional as F

from .augment import spec_augment, spread, vtlp
from .config import CONV_WIDTH, DILATIONS, KERNEL, N_CLASSES, ModelConfig

_ACTIVATIONS = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


class Dropout(nn.Dropout):
    """nn.Dropout whose CPU mask comes from rand_like (about 3x faster there than bernoulli_,
    which took a quarter of a wide-deep training step); other devices use the fused kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu":
            return super().forward(x)
        return x * (torch.rand_like(x) >= self.p) * (1 / (1 - self.p))


def build(cfg: ModelConfig, width: int) -> nn.Module:
    """The model for rows of `width` features: an MLP, or a Tagger for kind = 'tagger'."""
    return Tagger(cfg, width) if cfg.sequence else mlp(cfg, width)


def mlp(cfg: ModelConfig, input_dim: int) -> nn.Sequential:
    """Linear -> [BatchNorm] -> activation -> [Dropout] per hidden layer, then Linear to 39 logits."""
    layers: list[nn.Module] = []
    width = input_dim
    for h in cfg.hidden:
        layers.append(nn.Linear(width, h))
        if cfg.batchnorm:
            layers.append(nn.BatchNorm1d(h))
        layers.append(_ACTIVATIONS[cfg.activation]())
        if cfg.dropout > 0:
            layers.append(Dropout(cfg.dropout))
        width = h
    layers.append(nn.Linear(width, N_CLASSES))
    return nn.Sequential(*layers)


def reverse_within(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each padded sequence (B, T, D) reversed within its own length; the padding stays at the end."""
    t = torch.arange(x.shape[1], device=x.device)[None, :]
    n = lengths.to(x.device)[:, None]
    idx = torch.where(t < n, n - 1 - t, t)
    return x.gather(1, idx.unsqueeze(-1).expand_as(x))


def frame_positions(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """Flat positions, in a (len(lengths), steps) padded layout, of each utterance's real frames in
    order (what a boolean mask of the padding would select), from lengths on the host."""
    offsets = torch.arange(len(lengths)) * steps - torch.cumsum(lengths, 0) + lengths
    return torch.arange(int(lengths.sum())) + torch.repeat_interleave(offsets, lengths)


def conv_frames(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """conv(x) for x in (B, T, C) layout, as one matmul of each frame's dilated neighbours side by
    side: the same numbers as nn.Conv1d on the transposed input, faster on a CPU (no layout copies)."""
    d, k, steps = conv.dilation[0], conv.kernel_size[0], x.shape[1]
    padded = F.pad(x, (0, 0, d * (k // 2), d * (k // 2)))
    taps = torch.cat([padded[:, i * d:i * d + steps] for i in range(k)], -1)
    return torch.addmm(conv.bias, taps.flatten(0, 1), conv.weight.permute(2, 1, 0).flatten(0, 1)).view(*x.shape[:2], -1)


class Block(nn.Module):
    """x + Dropout(gate * ReLU(a dilated convolution of LayerNorm(x))), zero past each utterance's
    end. The gate (squeeze-and-excitation over the utterance's mean) lets each block see the whole
    utterance, as a BiLSTM does, for a few operations per frame. The convolution runs as one matmul
    over the frames side by side in their (B, T, C) layout (conv_frames), with no transposes."""

    def __init__(self, size: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(size)
        self.conv = nn.Conv1d(size, size, KERNEL, padding=dilation * (KERNEL // 2), dilation=dilation)
        self.gate = nn.Sequential(nn.Linear(size, size // 8), nn.ReLU(), nn.Linear(size // 8, size), nn.Sigmoid())
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = torch.relu(conv_frames(self.norm(x) * mask, self.conv)) * mask
        y = y * self.gate(y.sum(1, keepdim=True) / mask.sum(1, keepdim=True))
        return x + self.drop(y)  # both zero past the end already


class Tagger(nn.Module):
    """[per-utterance normalisation] -> [VTLP and masks, when training] -> [Conv1d + ReLU] -> LSTM/GRU layers
    or dilated conv blocks -> Linear, per frame.

    Input: zero-padded utterances (B, T, D), their lengths (B,) and optionally the flat positions of
    their real frames (frame_positions; the batches bring them, so nothing is masked on the device);
    output: logits of the real frames, utterance after utterance. Padding never reaches a real
    frame: each direction runs on sequences whose padding comes after their last frame (the
    backward direction on each sequence reversed within its length), and every convolution sees
    zeros past an utterance's end (the padding is zeroed first, and again after each convolution).
    (Packed sequences give the same result but train several times slower on CPU.)
    """

    def __init__(self, cfg: ModelConfig, width: int) -> None:
        super().__init__()
        self.normalize = cfg.normalize
        self.time_mask, self.feature_mask, self.warp = cfg.time_mask, cfg.feature_mask, cfg.warp
        d = cfg.input_dim(width)
        self.conv = nn.Conv1d(d, cfg.conv, CONV_WIDTH, padding=CONV_WIDTH // 2) if cfg.conv else None
        self.drop = nn.Dropout(cfg.dropout)
        self.convolutional = cfg.cell == "conv"
        if self.convolutional:
            self.inp = nn.Conv1d(cfg.conv or d, cfg.size, KERNEL, padding=KERNEL // 2)
            self.blocks = nn.ModuleList(Block(cfg.size, DILATIONS[i % len(DILATIONS)], cfg.dropout)
                                        for i in range(cfg.layers))
            self.final = nn.LayerNorm(cfg.size)
            self.out = nn.Linear(cfg.size, N_CLASSES)
            return
        rnn = nn.LSTM if cfg.cell == "lstm" else nn.GRU
        dirs = 2 if cfg.bidirectional else 1
        self.layers = nn.ModuleList(
            nn.ModuleList(rnn(cfg.conv or d if i == 0 else dirs * cfg.size, cfg.size, batch_first=True)
                          for _ in range(dirs))
            for i in range(cfg.layers))
        self.out = nn.Linear(cfg.size * dirs, N_CLASSES)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, where: torch.Tensor | None = None) -> torch.Tensor:
        if where is None:
            where = frame_positions(lengths.cpu(), x.shape[1]).to(x.device)
        lengths = lengths.to(x.device)
        mask = (torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]).unsqueeze(-1)
        x = x * mask  # whatever the padding held, it is zero from here on
        if self.normalize:
            centred, std = spread(x, mask)
            x = centred / (std + 1e-5)
        if self.training and self.warp:
            x = vtlp(x, mask, self.warp)
        if self.training and (self.time_mask or self.feature_mask):
            x = spec_augment(x, lengths, self.time_mask, self.feature_mask)
        if self.conv is not None:
            x = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2) * mask
        x = self._convolve(x, mask) if self.convolutional else self._recur(x, lengths)
        return self.out(self.drop(x.reshape(-1, x.shape[-1]).index_select(0, where)))

    def _convolve(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = conv_frames(x, self.inp) * mask
        for block in self.blocks:
            x = block(x, mask)
        return self.final(x)

    def _recur(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        for i, directions in enumerate(self.layers):
            if i:
                x = self.drop(x)
            outs = [directions[0](x)[0]]
            if len(directions) > 1:
                outs.append(reverse_within(directions[1](reverse_within(x, lengths))[0], lengths))
            x = torch.cat(outs, -1)
        return x


def flops_per_frame(cfg: ModelConfig, input_dim: int) -> int:
    """Matmul FLOPs of one training step per frame: forward, weight gradients and input gradients
    (2 x weights each), less the first layer's input gradient, which is never computed. For a
    tagger: 6 x its parameters (each weight is used once per frame in every pass)."""
    if cfg.sequence:
        return 6 * cfg.param_count(input_dim)
    sizes = [input_dim, *cfg.hidden, N_CLASSES]
    weights = [a * b for a, b in pairwise(sizes)]
    return 6 * sum(weights) - 2 * weights[0]
