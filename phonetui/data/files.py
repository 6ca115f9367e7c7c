"""TIMIT 11-frame data: find it, check it, memory-map it, split it.

A data folder holds `train_11.npy` (N, 429) float32, `train_label_11.npy` (N,) labels as strings
('36') or integers, `test_11.npy` (M, 429) float32 and, for demo sets, `test_label_11.npy` and a
marker file saying which generator made them (synthesized speech or simulated).
Features stay memory-mapped (copy-on-write, never float64); every problem is one PhonetuiError
line naming the file.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import FRAME_DIM, N_CLASSES
from ..errors import PhonetuiError
from ..fileio import check_regular, failed, read_text, write_text
from . import speech, utterances

TRAIN_X, TRAIN_Y, TEST_X, TEST_Y = "train_11.npy", "train_label_11.npy", "test_11.npy", "test_label_11.npy"
DEMO_MARKER = "phonetui-demo.json"
DEMO_TRAIN_ROWS, DEMO_TEST_ROWS = 400_000, 100_000  # the simulated set
DEMO_UTTERANCES, DEMO_TEST_UTTERANCES = 1200, 400  # the speech set: about 470,000 + 157,000 rows
DEMO_KINDS = {"speech": "synthesized speech", "simulated": "simulated"}
_SCAN_ROWS = 65_536  # rows checked for NaN at a time


@dataclass
class TimitData:
    """A checked data folder; features are memory-mapped views of the files."""

    path: Path
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray | None
    utterance_starts: np.ndarray  # first row of each training utterance (see phonetui.data.utterances)
    test_starts: np.ndarray  # first row of each test utterance
    demo: str | None  # which demo generator made the set (a DEMO_KINDS value), None for real data

    @property
    def width(self) -> int:
        return self.train_x.shape[1]

    def n_train(self, val_ratio: float, by_utterance: bool = False) -> int:
        """Rows used for training; the rest, from the tail, validate. Frame models split at the row,
        as the course code does; sequence models at the first utterance start from there on."""
        rows = int(len(self.train_x) * (1 - val_ratio))
        if not by_utterance or val_ratio == 0:
            return rows
        i = int(np.searchsorted(self.utterance_starts, rows))
        return int(self.utterance_starts[i]) if i < len(self.utterance_starts) else len(self.train_x)

    def train_units(self, val_ratio: float, by_utterance: bool = False) -> int:
        """What a batch draws from: training rows, or training utterances."""
        n = self.n_train(val_ratio, by_utterance)
        return int(np.searchsorted(self.utterance_starts, n)) if by_utterance else n

    def describe(self, val_ratio: float | None = None, by_utterance: bool = False) -> str:
        """One line, short enough for the app's top line at 120 columns: which data (the home folder
        as ~), whether it is the demo set, and its rows (split for `val_ratio`)."""
        n = len(self.train_x)
        rows = f"{n:,} rows"
        if val_ratio is not None:
            k = self.n_train(val_ratio, by_utterance)
            rows = f"{k:,} train / {n - k:,} val"
        kind = f"DEMO {self.demo}" if self.demo else "data"
        home, path = str(Path.home()), str(self.path)
        where = "~" + path[len(home):] if home not in ("", "/") and path.startswith(home + "/") else path
        return f"{kind} {where} · {rows} / {len(self.test_x):,} test rows"


_MAGIC = {b"\x93NUMPY": None, b"PK\x03\x04": "a .npz archive, not a .npy array (save each array with np.save)",
          b"\x80": "pickled data, which is never loaded"}


def _load_npy(path: Path) -> np.ndarray:
    """A .npy file memory-mapped; anything else is refused saying what it is."""
    check_regular(path)
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError as e:
        raise failed(path, "read", e) from None
    kind = next((what for magic, what in _MAGIC.items() if head.startswith(magic)), "unknown")
    if not head:
        kind = "an empty file"
    elif kind == "unknown":
        kind = "text or some other format, not a .npy array" if head.isascii() else "not a .npy array file"
    if kind is not None:
        raise PhonetuiError(f"{path}: {kind}")
    try:
        return np.load(path, mmap_mode="c", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        if "allow_pickle" in str(e) or "Python objects" in str(e):
            raise PhonetuiError(f"{path}: holds Python objects (pickled data), which are never loaded") from None
        reason = (str(e).splitlines() or [type(e).__name__])[0]
        raise PhonetuiError(f"{path}: not a usable .npy array ({reason})") from None


def load_features(path: Path, width: int | None = None) -> np.ndarray:
    """A (rows, width) float32 memory map; checks dtype, shape and (chunk by chunk) NaN/Inf."""
    x = _load_npy(path)
    if x.dtype != np.float32:
        raise PhonetuiError(f"{path}: features must be float32, got {x.dtype}")
    if x.ndim != 2:
        raise PhonetuiError(f"{path}: features must be 2-D (rows, {11 * FRAME_DIM}), got shape {x.shape}")
    if x.shape[1] == 0 or x.shape[1] % FRAME_DIM:
        raise PhonetuiError(f"{path}: width {x.shape[1]} is not a multiple of {FRAME_DIM}")
    if width is not None and x.shape[1] != width:
        raise PhonetuiError(f"{path}: width {x.shape[1]} differs from the training features' {width}")
    if len(x) == 0:
        raise PhonetuiError(f"{path}: no rows")
    for lo in range(0, len(x), _SCAN_ROWS):
        ok = np.isfinite(x[lo:lo + _SCAN_ROWS]).all(axis=1)
        if not ok.all():
            raise PhonetuiError(f"{path}: NaN or Inf in features at row {lo + int(np.argmin(ok))}")
    return x


def load_labels(path: Path, rows: int) -> np.ndarray:
    """Labels as int64 in 0..38, from strings ('36') or integers; one row per feature row."""
    y = np.asarray(_load_npy(path))
    if y.ndim != 1:
        raise PhonetuiError(f"{path}: labels must be 1-D, got shape {y.shape}")
    if len(y) != rows:
        raise PhonetuiError(f"{path}: {len(y):,} labels for {rows:,} feature rows")
    where = f"{path}: label"
    if y.dtype.kind in "US":
        return _parse_text_labels(y, where)
    if y.dtype.kind == "f":
        bad = ~(np.isfinite(y) & (y == np.round(y)))
        if bad.any():
            i = int(np.argmax(bad))
            raise PhonetuiError(f"{where} {y[i]} at row {i} is not an integer")
    elif y.dtype.kind not in "iu":
        raise PhonetuiError(f"{path}: labels must be integers or integer strings, got {y.dtype}")
    out = (y < 0) | (y >= N_CLASSES)  # before any cast, so a huge value is shown as it is
    if out.any():
        i = int(np.argmax(out))
        raise PhonetuiError(f"{where} {y[i]:g} at row {i} is outside 0..{N_CLASSES - 1}" if y.dtype.kind == "f"
                            else f"{where} {y[i]} at row {i} is outside 0..{N_CLASSES - 1}")
    return y.astype(np.int64)


_INTEGER = re.compile(r"[+-]?[0-9]+\Z")


def _parse_text_labels(y: np.ndarray, where: str) -> np.ndarray:
    """Integer strings ('36', ASCII digits with an optional sign) as int64, each checked once per distinct value."""
    values, inverse = np.unique(y.astype(str), return_inverse=True)
    parsed = np.zeros(len(values), np.int64)
    for k, text in enumerate(values.tolist()):
        stripped = text.strip()
        row = int(np.argmax(inverse == k))
        if not _INTEGER.match(stripped):
            raise PhonetuiError(f"{where} {text[:40]!r} at row {row} is not an integer")
        if not 0 <= int(stripped) < N_CLASSES:
            raise PhonetuiError(f"{where} {stripped[:40]} at row {row} is outside 0..{N_CLASSES - 1}")
        parsed[k] = int(stripped)
    return parsed[inverse.reshape(-1)]


def load(path: Path) -> TimitData:
    """Open and check a data folder (all problems raise PhonetuiError naming the file)."""
    if not path.is_dir():
        raise PhonetuiError(f"{path}: data folder not found" if not path.exists() else f"{path}: not a folder")
    try:
        os.listdir(path)
    except OSError as e:
        raise failed(path, "read the data folder", e) from None
    train_x = load_features(path / TRAIN_X)
    train_y = load_labels(path / TRAIN_Y, len(train_x))
    test_x = load_features(path / TEST_X, train_x.shape[1])
    test_y = load_labels(path / TEST_Y, len(test_x)) if (path / TEST_Y).exists() else None
    cache = cache_dir() / "utterances"
    return TimitData(path, train_x, train_y, test_x, test_y, utterances.starts(train_x, path / TRAIN_X, cache),
                     utterances.starts(test_x, path / TEST_X, cache), demo_kind(path))


def demo_kind(path: Path) -> str | None:
    """Which generator made the data in `path` (from its marker file), or None for real data."""
    if not (path / DEMO_MARKER).exists():
        return None
    try:
        marker = json.loads(read_text(path / DEMO_MARKER))
    except (PhonetuiError, ValueError):
        return "demo"
    kind = marker.get("kind", "simulated") if isinstance(marker, dict) else None
    return DEMO_KINDS.get(kind, "demo")


def _check_out(out: Path, force: bool) -> None:
    """Refuse to write a demo set over a folder of .npy files that no demo generator made (unless forced)."""
    if out.exists() and not out.is_dir():
        raise PhonetuiError(f"{out}: not a folder")
    if force or (out / DEMO_MARKER).exists() or not out.exists():
        return
    try:
        found = sorted(p.name for p in out.glob("*.npy"))
    except OSError as e:
        raise failed(out, "read", e) from None
    if found:
        raise PhonetuiError(f"{out}: holds .npy files that are not a phonetui demo set ({', '.join(found[:3])}); "
                            "choose another --out, or --force to replace them")


_DEMO_FILES = (TEST_Y, DEMO_MARKER, speech.UTTERANCES)
DEMO_MAX_ROWS, DEMO_MAX_UTTERANCES = 4_000_000, 10_000  # per split: about 7 GB of features, held in memory


def _check_seed(seed: int) -> None:
    if not 0 <= seed < 2**63:
        raise PhonetuiError(f"demo-data: --seed {seed}: must be an integer from 0 to 2**63 - 1")


def make_demo(out: Path, train_rows: int, test_rows: int, seed: int, force: bool = False) -> Path:
    """Generate a simulated demo set (see phonetui.data.simulated) and mark it as demo data."""
    from . import simulated

    if train_rows < 100 or test_rows < 1:
        raise PhonetuiError(f"demo-data: need at least 100 train rows and 1 test row, got {train_rows} / {test_rows}")
    if max(train_rows, test_rows) > DEMO_MAX_ROWS:
        raise PhonetuiError(f"demo-data: at most {DEMO_MAX_ROWS:,} rows per split, got {train_rows:,} / {test_rows:,}")
    _check_seed(seed)
    _check_out(out, force)
    marker = {"generator": "phonetui.data.simulated", "kind": "simulated", "train_rows": train_rows,
              "test_rows": test_rows, "seed": seed}
    simulated.generate(out, train_rows=train_rows, test_rows=test_rows, seed=seed, replaces=_DEMO_FILES,
                       mark=lambda tmp: write_text(tmp / DEMO_MARKER, json.dumps(marker) + "\n"))
    return out


def make_speech_demo(out: Path, utterances: int, test_utterances: int, seed: int, progress=None,
                     force: bool = False) -> dict:
    """Synthesize a speech demo set (see phonetui.data.speech), mark it, and return its summary."""
    if utterances < 2 or test_utterances < 1:
        raise PhonetuiError(f"demo-data: need at least 2 train utterances and 1 test utterance, "
                            f"got {utterances} / {test_utterances}")
    if max(utterances, test_utterances) > DEMO_MAX_UTTERANCES:
        raise PhonetuiError(f"demo-data: at most {DEMO_MAX_UTTERANCES:,} utterances per split, "
                            f"got {utterances:,} / {test_utterances:,}")
    _check_seed(seed)
    _check_out(out, force)
    def mark(tmp: Path, summary: dict) -> None:
        write_text(tmp / DEMO_MARKER, json.dumps(speech.marker(summary, seed)) + "\n")

    return speech.generate(out, utterances, test_utterances, seed, progress, replaces=_DEMO_FILES, mark=mark)


def cache_dir() -> Path:
    """Where the default demo set lives: $XDG_CACHE_HOME/phonetui (or ~/.cache/phonetui)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "phonetui"


def default_dir(say=print, progress=None) -> Path:
    """./timit_11 when it holds the course files, else a demo set in the cache, made on first use:
    synthesized speech when eSpeak NG is installed, the simulated set otherwise."""
    local = Path("timit_11")
    if all((local / f).is_file() for f in (TRAIN_X, TRAIN_Y, TEST_X)):
        return local
    missing = speech.available()
    if missing is None:
        demo_dir = cache_dir() / "demo-speech"
        if not (demo_dir / DEMO_MARKER).is_file():
            say(f"no ./timit_11 here: synthesizing the speech demo set into {demo_dir} "
                f"({DEMO_UTTERANCES:,} + {DEMO_TEST_UTTERANCES:,} utterances, once)")
            make_speech_demo(demo_dir, DEMO_UTTERANCES, DEMO_TEST_UTTERANCES, seed=0, progress=progress)
        return demo_dir
    demo_dir = cache_dir() / "demo"
    if not (demo_dir / DEMO_MARKER).is_file():
        say(f"no ./timit_11 here and {missing}: generating the simulated demo set into {demo_dir} "
            f"({DEMO_TRAIN_ROWS:,} + {DEMO_TEST_ROWS:,} rows, once)")
        make_demo(demo_dir, DEMO_TRAIN_ROWS, DEMO_TEST_ROWS, seed=0)
    return demo_dir
