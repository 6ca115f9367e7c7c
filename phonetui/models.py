"""Models: an MLP over the frame window, built from a ModelConfig.

The rest of phonetui sees only `build(cfg, input_dim)` and `(batch, input_dim) -> (batch, 39)`
logits, so a model over whole utterances can later take its place behind the batch sampler.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Callable

import torch
from torch import nn

from .config import N_CLASSES, ModelConfig
from .errors import PhonetuiError

_ACTIVATIONS = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


class Dropout(nn.Dropout):
    """nn.Dropout whose CPU mask comes from rand_like (about 3x faster there than bernoulli_,
    which took a quarter of a wide-deep training step); other devices use the fused kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu":
            return super().forward(x)
        return x * (torch.rand_like(x) >= self.p) * (1 / (1 - self.p))


CPU_BF16_MIN_BATCH = 64  # below it, casting the weights to bf16 every step costs more than it saves


def use_bf16(precision: str, device: torch.device, batch_size: int) -> bool:
    """Whether matmuls run under bf16 autocast: 'fp32' never, 'bf16' always (CUDA and CPU only), and
    'auto' where the hardware is fast at it: CUDA with bf16 support, and CPUs with AMX tiles when
    batches hold at least CPU_BF16_MIN_BATCH rows. Weights, optimizer state and the loss stay fp32."""
    if precision == "bf16" and device.type not in ("cuda", "cpu"):
        raise PhonetuiError(f"training.precision = 'bf16': bf16 autocast runs on CUDA and CPU, not {device.type}")
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    return device.type == "cpu" and batch_size >= CPU_BF16_MIN_BATCH and amx()


def build(cfg: ModelConfig, input_dim: int) -> nn.Sequential:
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


def flops_per_frame(cfg: ModelConfig, input_dim: int) -> int:
    """Matmul FLOPs of one training step per frame: forward, weight gradients and input gradients
    (2 x weights each), less the first layer's input gradient, which is never computed."""
    sizes = [input_dim, *cfg.hidden, N_CLASSES]
    weights = [a * b for a, b in pairwise(sizes)]
    return 6 * sum(weights) - 2 * weights[0]


@torch.inference_mode()
def infer(model: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int,
          take: Callable[[int, torch.Tensor], None], bf16: bool = False) -> None:
    """Run the model in eval mode over x in batches, handing take(first_row, float32 logits) each."""
    model.eval()
    for lo in range(0, len(x), batch_size):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x[lo:lo + batch_size].to(device, non_blocking=True))
        take(lo, logits.float())
