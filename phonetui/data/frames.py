"""From per-frame coefficients to course rows: deltas, normalisation, 11-frame windows, files.

Shared by the demo generators, so both write exactly the course's layout: 13 statics + deltas +
delta-deltas per frame, normalised per utterance, stacked frame-major into (T, 429) rows with the
edge frames repeated, labels as strings '0'..'38'.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

N_STATIC = 13
N_FEAT = 3 * N_STATIC
CONTEXT = 5  # frames either side of the centre
ROW_DIM = (2 * CONTEXT + 1) * N_FEAT
N_MELS, LIFTER, BAND_HZ = 26, 22, (20, 8000)  # the statics: HTK-style MFCCs c0..c12 of 26 mel bands


def mel(hz: np.ndarray | float) -> np.ndarray | float:
    """Hertz to mel."""
    return 2595 * np.log10(1 + hz / 700)


def mel_edges() -> np.ndarray:
    """The N_MELS + 2 band edges in Hz (each band's centre is the next edge), evenly spaced in mel."""
    return 700 * (10 ** (np.linspace(mel(BAND_HZ[0]), mel(BAND_HZ[1]), N_MELS + 2) / 2595) - 1)


def cepstra() -> np.ndarray:
    """Liftered DCT-II (13, N_MELS): log mel energies to the statics c0..c12."""
    k = np.arange(N_STATIC)[:, None]
    dct = np.cos(np.pi * k * (np.arange(N_MELS) + 0.5) / N_MELS) * np.sqrt(2 / N_MELS)
    return dct * (1 + LIFTER / 2 * np.sin(np.pi * np.arange(N_STATIC) / LIFTER))[:, None]


def deltas(x: np.ndarray) -> np.ndarray:
    """Standard delta regression over +-2 frames with edge frames repeated."""
    p = np.pad(x, ((2, 2), (0, 0)), mode="edge")
    return (p[3:-1] - p[1:-3] + 2 * (p[4:] - p[:-4])) / 10.0


def features(static: np.ndarray) -> np.ndarray:
    """Statics + deltas + delta-deltas (T, 39) float32, mean/variance normalised over the utterance."""
    delta = deltas(static)
    feats = np.hstack([static, delta, deltas(delta)])
    feats -= feats.mean(axis=0)
    feats /= feats.std(axis=0) + 1e-3
    return feats.astype(np.float32)


def windows(feats: np.ndarray) -> np.ndarray:
    """Stack 11-frame windows (T, 429) with edge frames repeated."""
    t = len(feats)
    idx = np.clip(np.arange(t)[:, None] + np.arange(-CONTEXT, CONTEXT + 1), 0, t - 1)
    return feats[idx].reshape(t, ROW_DIM)


def write_split(x_path: Path, y_path: Path, utterances: Iterable[tuple[np.ndarray, np.ndarray]]) -> int:
    """Write utterances of (features (T, 39), labels (T,)) as rows + string labels; return the row count.

    Rows are streamed to the .npy file one utterance at a time; only the 39-wide frames are in memory.
    """
    utterances = list(utterances)
    rows = sum(len(f) for f, _ in utterances)
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
              "fortran_order": False, "shape": (rows, ROW_DIM)}
    with open(x_path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        for feats, _ in utterances:
            windows(feats).tofile(f)
    labels = np.concatenate([y for _, y in utterances]) if utterances else np.zeros(0, np.int64)
    np.save(y_path, labels.astype("<U2"))
    return rows


def build_folder(out_dir: Path, fill: Callable[[Path], None], replaces: Iterable[str] = (),
                 mark: Callable[[Path], None] | None = None) -> Path:
    """Let `fill` write into a temporary sibling folder, then `mark` (the demo marker, written there
    too, so a folder never holds a set without its marker), then move its files into `out_dir`:
    the whole folder renamed, or into an existing one file by file, the marker last.

    Files named in `replaces` that the new set lacks are removed from `out_dir` (no stale leftovers).
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        fill(tmp)
        before = {p.name for p in tmp.iterdir()}
        if mark:
            mark(tmp)
        if out_dir.exists():
            for name in set(replaces) - {p.name for p in tmp.iterdir()}:
                (out_dir / name).unlink(missing_ok=True)
            for path in sorted(tmp.iterdir(), key=lambda p: p.name not in before):
                os.replace(path, out_dir / path.name)
            tmp.rmdir()
        else:
            tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
