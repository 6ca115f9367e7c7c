"""The conv tagger's training step: its convolutions as one matmul (models.conv_frames) against
nn.Conv1d on the transposed frames, with `bilstm`'s step beside them, per utterance.

    python bench/conv.py                # 1 thread, 390-frame utterances, 20 timed steps each
    python bench/conv.py --threads 2 --steps 40

Each preset's model takes a batch of its own size (`conv` 8, `bilstm` 16) of random frames with
the speech set's typical utterance length; the steps of each are timed after 3 warm-up steps,
the variants interleaved so that the box's load falls on all of them alike.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from phonetui import models, presets


def conv1d(x: torch.Tensor, conv: torch.nn.Conv1d) -> torch.Tensor:
    """The layers of before: nn.Conv1d on (B, C, T), transposed in and out."""
    return conv(x.transpose(1, 2)).transpose(1, 2)


def stepper(preset: str, frames: int):
    cfg = presets.load_all()[preset]
    torch.manual_seed(0)
    model = models.build(cfg.model, 429).train()
    opt = torch.optim.AdamW(model.parameters(), cfg.training.lr)
    b = cfg.training.batch_size
    x = torch.randn(b, frames, cfg.model.input_dim(429))
    lengths = torch.full((b,), frames)
    y = torch.randint(0, 39, (b * frames,))

    def step() -> None:
        loss = F.cross_entropy(model(x, lengths), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step, b


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--frames", type=int, default=390, help="frames per utterance (the speech set's mean)")
    p.add_argument("--json", type=Path, default=Path("bench/results-conv.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    fast = models.conv_frames
    variants = {"conv (conv_frames)": ("conv", fast), "conv (nn.Conv1d)": ("conv", conv1d), "bilstm": ("bilstm", fast)}
    steps = {name: stepper(preset, args.frames) for name, (preset, _) in variants.items()}
    seconds = dict.fromkeys(variants, 0.0)
    for rnd in range(args.steps + 3):
        for name, (_, conv) in variants.items():
            models.conv_frames = conv  # Block.forward looks it up on each call
            step, _ = steps[name]
            start = time.perf_counter()
            step()
            if rnd >= 3:
                seconds[name] += time.perf_counter() - start
    models.conv_frames = fast
    per_utt = {name: seconds[name] / args.steps / steps[name][1] for name in variants}
    for name, s in per_utt.items():
        print(f"{name:20s} {s * 1000:7.1f} ms per utterance  bilstm / this: {per_utt['bilstm'] / s:.2f}x")
    args.json.write_text(json.dumps({"threads": args.threads, "frames": args.frames, "steps": args.steps,
                                     "ms_per_utterance": {k: round(v * 1000, 2) for k, v in per_utt.items()}}, indent=1) + "\n")


if __name__ == "__main__":
    main()
