"""Decoding along the utterance: the best phone sequence under a bigram HMM over the model's posteriors.

Transitions (with their self-loops, which carry the phones' durations) are counted from the
training labels within utterances, add-one smoothed. A frame's score for phone j after phone i is
`scale * log p(j | frame) + log P(j | i) + loop * [i == j]`: scale weighs the model against the
transitions, and loop is the duration term (> 0 favours staying in a phone, < 0 changing), both
tuned on the validation split (see `tune`). With uniform transitions and no duration term the
decode is the per-frame argmax. Vectorised over a batch of utterances in torch, one step per frame
of the longest.
"""

from __future__ import annotations

import numpy as np
import torch

from .config import N_CLASSES

SCALES = (0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0)  # tried on the validation split
LOOPS = (-1.0, 0.5, 1.0, 2.0, 4.0)  # duration terms then tried at the best scale (besides 0)
BATCH = 256  # utterances decoded at once
EPOCH_TUNING = 64  # utterances a training tunes on each epoch (then decodes the whole split once)


def transitions(labels: np.ndarray, starts: np.ndarray) -> torch.Tensor:
    """(39, 39) log P(next | previous) from consecutive frames inside each utterance, add-one smoothed."""
    y = torch.as_tensor(np.asarray(labels, np.int64))
    same = torch.ones(len(y) - 1, dtype=torch.bool)
    cuts = torch.as_tensor(np.asarray(starts, np.int64))
    same[cuts[(cuts > 0) & (cuts < len(y))] - 1] = False  # no transition across an utterance boundary
    pairs = y[:-1][same] * N_CLASSES + y[1:][same]
    counts = torch.bincount(pairs, minlength=N_CLASSES**2).reshape(N_CLASSES, N_CLASSES).double() + 1
    return (counts / counts.sum(1, keepdim=True)).log().float()


def of_training(data, n_train: int) -> torch.Tensor:
    """transitions() of a data set's training split (its first n_train rows, whole utterances)."""
    from .data import utterances

    return transitions(data.train_y[:n_train], utterances.within(data.utterance_starts, 0, n_train))


def viterbi(probs: torch.Tensor, starts: np.ndarray, log_trans: torch.Tensor, scale: float = 1.0,
            loop: float = 0.0) -> torch.Tensor:
    """(rows,) best phone path of each utterance (rows in utterance order, `starts` their first rows)."""
    n = len(probs)
    bounds = np.append(np.asarray(starts, np.int64), n)
    emit = scale * probs.float().clamp_min(1e-8).log()
    trans = log_trans.to(emit.device) + loop * torch.eye(N_CLASSES, device=emit.device)
    out = torch.empty(n, dtype=torch.long, device=emit.device)
    utts = len(bounds) - 1
    for lo in range(0, utts, BATCH):
        first, ends = bounds[lo:min(lo + BATCH, utts)], bounds[lo + 1:min(lo + BATCH, utts) + 1]
        lengths = torch.as_tensor(ends - first)
        steps, count = int(lengths.max()), len(first)
        t = torch.arange(steps)
        idx = (torch.as_tensor(first)[:, None] + t[None, :]).clamp(max=n - 1).to(emit.device)
        e = emit[idx]  # (U, T, 39); past an utterance's end the rows are ignored
        valid = (t[None, :] < lengths[:, None]).to(emit.device)
        score = e[:, 0]
        back = torch.zeros((count, steps, N_CLASSES), dtype=torch.uint8, device=emit.device)
        for s in range(1, steps):
            best, arg = (score[:, :, None] + trans[None]).max(1)  # over the previous phone
            new = best + e[:, s]
            keep = valid[:, s, None]
            score = torch.where(keep, new, score)
            back[:, s] = torch.where(keep, arg, torch.arange(N_CLASSES, device=emit.device)[None]).to(torch.uint8)
        state = score.argmax(1)
        path = torch.empty((count, steps), dtype=torch.long, device=emit.device)
        for s in range(steps - 1, -1, -1):  # past the end the pointers stay put, so each path ends at its own best
            path[:, s] = state
            state = back[:, s].gather(1, state[:, None]).squeeze(1).long()
        out[idx[valid]] = path[valid]
    return out


def sample(probs: torch.Tensor, y: torch.Tensor, starts: np.ndarray, count: int):
    """(probs, y, starts) of `count` utterances spread evenly over the split (all of them if fewer)."""
    if len(starts) <= count:
        return probs, y, starts
    bounds = np.append(np.asarray(starts, np.int64), len(probs))
    keep = np.unique(np.linspace(0, len(starts) - 1, count).round().astype(np.int64))
    rows = torch.from_numpy(np.concatenate([np.arange(bounds[i], bounds[i + 1]) for i in keep]))
    lengths = bounds[keep + 1] - bounds[keep]
    return probs[rows.to(probs.device)], y[rows.to(y.device)], np.concatenate([[0], np.cumsum(lengths)[:-1]])


def tune(probs: torch.Tensor, y: torch.Tensor, starts: np.ndarray, log_trans: torch.Tensor,
         utterances: int | None = None) -> tuple[float, float, float]:
    """(scale, loop, accuracy) that decode the labelled split best: the best of SCALES with no
    duration term, then the best of LOOPS at that scale where one beats it. With `utterances`,
    on that many of the split's utterances (sample), as a training tunes each epoch."""
    y = y.to(probs.device)
    if utterances:
        probs, y, starts = sample(probs, y, starts, utterances)

    def accuracy(scale: float, loop: float) -> float:
        return float((viterbi(probs, starts, log_trans, scale, loop) == y).float().mean())

    acc, scale = max((accuracy(s, 0.0), s) for s in SCALES)
    loop = 0.0
    for candidate in LOOPS:
        tried = accuracy(scale, candidate)
        if tried > acc:
            acc, loop = tried, candidate
    return scale, loop, acc
