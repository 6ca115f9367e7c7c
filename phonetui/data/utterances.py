"""Utterances from rows: where each one starts, found from the rows' overlap and cached.

Rows come in utterance order and overlap: inside an utterance, row i's frames 1..10 equal row
i+1's frames 0..9 (the edge frame is repeated at both ends), so an utterance starts wherever that
fails. One streamed pass over the memory map finds the starts (no copy of the features); the result
is cached in the user's cache folder, keyed by the file's path, size and modification time.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from ..config import FRAME_DIM
from ..errors import PhonetuiError

_SCAN_ROWS = 65_536


def scan(x: np.ndarray) -> np.ndarray:
    """Row indices where an utterance begins: where row i+1 is not row i shifted by one frame."""
    f = FRAME_DIM
    if x.shape[1] == f:
        return np.zeros(1, np.int64)
    breaks = [np.zeros(1, np.int64)]
    for lo in range(0, len(x) - 1, _SCAN_ROWS):
        a = x[lo:lo + _SCAN_ROWS + 1]
        same = (a[:-1, f:] == a[1:, :-f]).all(axis=1)
        breaks.append(np.flatnonzero(~same) + lo + 1)
    return np.concatenate(breaks)


def _key(path: Path) -> str:
    st = path.stat()
    return hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:20]


def starts(x: np.ndarray, path: Path | None = None, cache: Path | None = None) -> np.ndarray:
    """scan(x), read from / written to `cache` when the rows come from the file `path`."""
    if path is None or cache is None:
        return scan(x)
    file = cache / f"{_key(path)}.npy"
    try:
        found = np.load(file, allow_pickle=False)
        if found.ndim == 1 and len(found) and found[0] == 0 and found[-1] < len(x):
            return found.astype(np.int64)
    except (OSError, ValueError):
        pass
    found = scan(x)
    try:  # a cache that cannot be written is only slower next time
        cache.mkdir(parents=True, exist_ok=True)
        tmp = file.with_suffix(f".tmp-{os.getpid()}.npy")
        np.save(tmp, found)
        os.replace(tmp, file)
    except OSError:
        pass
    return found


def check_ordered(found: np.ndarray, rows: int, path: Path) -> None:
    """Refuse rows that do not chain into utterances (shuffled data): a tagger needs whole utterances."""
    if rows / len(found) < 2:
        raise PhonetuiError(f"{path}: rows are not in utterance order ({rows:,} rows make {len(found):,} utterances "
                            "by the overlap rule), so a sequence preset cannot train on them; frame presets can")


def within(found: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Starts of the utterances, or parts of utterances, among rows lo..hi, counted from lo."""
    inside = found[(found > lo) & (found < hi)] - lo
    return np.concatenate([np.zeros(1, np.int64), inside]) if hi > lo else np.zeros(0, np.int64)
