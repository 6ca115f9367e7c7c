"""Simulated demo data in the TIMIT "timit_11" format (numpy only).

Each utterance is a phone sequence from a fixed Markov chain over the 39 classes,
framed by silence (class 38). Every phone lasts a gamma-distributed number of frames
and moves linearly from an onset to an offset template (13 static coefficients);
phones come in confusable clusters (vowels, stops, fricatives...). Each occurrence
is perturbed, the trajectory is smoothed across phone boundaries (coarticulation),
warped by a per-utterance speaker transform and overlaid with correlated noise.
Deltas and delta-deltas make 39 features per frame, normalised per utterance
(CMVN); rows stack 11-frame windows with edge frames repeated, exactly like the
course files. The phone model comes from a fixed internal seed, so every user seed
(and train vs test) shares one "language" while speakers and utterances differ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import frames
from .frames import N_STATIC

N_CLASSES = 39
SIL = 38

_LANGUAGE_SEED = 2021
# Confusable groups of phones; phones in a group share a cluster centre.
_CLUSTERS = (
    (0, 1, 2, 3, 8),  # front vowels
    (4, 5, 6, 7, 12, 17),  # central/back vowels
    (9, 10, 11),  # diphthongs
    (13, 14, 15, 16),  # liquids and glides
    (18, 19, 20),  # nasals
    (21, 22, 36),  # affricates and sh
    (23, 31, 32),  # voiced fricatives
    (33, 34, 35, 37),  # unvoiced fricatives and hh
    (24, 25, 26, 27),  # voiced stops and flap
    (28, 29, 30),  # unvoiced stops
    (38,),  # silence and closures
)
_STOPS = (24, 25, 26, 27, 28, 29, 30)

# Difficulty knobs (standard deviations, in template units).
_CLUSTER_SPREAD = 1.0
_PHONE_SPREAD = 0.4
_GLIDE_SPREAD = 0.35
_TOKEN_SPREAD = 0.3
_SPEAKER_WARP = 0.25
_SPEAKER_SHIFT = 0.3
_NOISE = 0.9
_SMOOTH = 5  # coarticulation window (frames)


@dataclass(frozen=True)
class _Language:
    """The fixed phone model shared by every generated set."""

    start: np.ndarray  # (39,) first-phone distribution after the opening silence
    trans: np.ndarray  # (39, 39) phone transition matrix, no self-loops
    mean_dur: np.ndarray  # (39,) mean duration in frames
    onset: np.ndarray  # (39, 13) templates at phone start
    offset: np.ndarray  # (39, 13) templates at phone end


def _language() -> _Language:
    """Build the phone model from the fixed internal seed."""
    rng = np.random.default_rng(_LANGUAGE_SEED)
    unigram = np.exp(rng.permutation(np.linspace(np.log(10.0), 0.0, N_CLASSES)))
    unigram[SIL] = 0.7 * unigram.mean()
    unigram /= unigram.sum()
    prefs = rng.dirichlet(0.15 * N_CLASSES * unigram, N_CLASSES)
    trans = 0.5 * prefs + 0.5 * unigram
    np.fill_diagonal(trans, 0.0)
    trans /= trans.sum(axis=1, keepdims=True)
    start = unigram.copy()
    start[SIL] = 0.0
    start /= start.sum()

    mean_dur = rng.uniform(6.0, 13.0, N_CLASSES)
    mean_dur[list(_STOPS)] = rng.uniform(3.0, 5.0, len(_STOPS))
    mean_dur[SIL] = 6.0  # inner silences are closures and pauses

    onset = np.empty((N_CLASSES, N_STATIC))
    for group in _CLUSTERS:
        centre = rng.normal(0.0, _CLUSTER_SPREAD, N_STATIC)
        onset[list(group)] = centre + rng.normal(0.0, _PHONE_SPREAD, (len(group), N_STATIC))
    offset = onset + rng.normal(0.0, _GLIDE_SPREAD, onset.shape)
    return _Language(start, trans, mean_dur, onset, offset)


_LANG = _language()


def _phones(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Sample one utterance: phone ids and their durations in frames."""
    n_inner = int(rng.integers(12, 45))
    phones = [SIL, int(rng.choice(N_CLASSES, p=_LANG.start))]
    for _ in range(n_inner - 1):
        phones.append(int(rng.choice(N_CLASSES, p=_LANG.trans[phones[-1]])))
    if phones[-1] != SIL:
        phones.append(SIL)
    ids = np.array(phones)
    mean = _LANG.mean_dur[ids]
    mean[[0, -1]] = rng.uniform(10.0, 25.0, 2)
    dur = np.maximum(np.rint(rng.gamma(4.0, mean / 4.0)), 1).astype(np.int64)
    return ids, dur


def _trajectory(ids: np.ndarray, dur: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Static features (T, 13): per-phone glides, smoothed across boundaries."""
    token = rng.normal(0.0, _TOKEN_SPREAD, (len(ids), N_STATIC))
    seg = np.repeat(np.arange(len(ids)), dur)
    pos = np.arange(len(seg)) - np.repeat(np.cumsum(dur) - dur, dur)
    frac = ((pos + 0.5) / dur[seg])[:, None]
    frames = (1 - frac) * _LANG.onset[ids[seg]] + frac * _LANG.offset[ids[seg]] + token[seg]
    return _moving_average(frames, _SMOOTH)


def _moving_average(x: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average over time with edge frames repeated."""
    half = width // 2
    padded = np.pad(x, ((half, half), (0, 0)), mode="edge")
    csum = np.cumsum(np.vstack([np.zeros((1, x.shape[1])), padded]), axis=0)
    return (csum[width:] - csum[:-width]) / width


def _speaker(static: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Apply a random near-identity speaker transform and correlated noise."""
    warp = np.eye(N_STATIC) + rng.normal(0.0, _SPEAKER_WARP / np.sqrt(N_STATIC), (N_STATIC, N_STATIC))
    shift = rng.normal(0.0, _SPEAKER_SHIFT, N_STATIC)
    white = rng.normal(0.0, _NOISE * np.sqrt(3.0), static.shape)
    return static @ warp.T + shift + _moving_average(white, 3)


def _split(rows: int, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """Utterances of (features, labels) until `rows` frames, the last one cut to fit."""
    out, done = [], 0
    while done < rows:
        ids, dur = _phones(rng)
        static = _speaker(_trajectory(ids, dur, rng), rng)[: rows - done]
        out.append((frames.features(static), np.repeat(ids, dur)[: len(static)]))
        done += len(static)
    return out


def generate(out_dir: str | Path, train_rows: int = 200_000, test_rows: int = 60_000,
             seed: int = 0, replaces: tuple[str, ...] = (), mark: Callable[[Path], None] | None = None) -> Path:
    """Write train/test features and labels in the timit_11 format; return out_dir.

    Files are built in a temporary sibling folder and moved into place at the end.
    """
    def fill(tmp: Path) -> None:
        for split, rows, stream in (("train", train_rows, 0), ("test", test_rows, 1)):
            rng = np.random.default_rng([seed, stream])
            frames.write_split(tmp / f"{split}_11.npy", tmp / f"{split}_label_11.npy", _split(rows, rng))

    return frames.build_folder(Path(out_dir), fill, replaces, mark)
