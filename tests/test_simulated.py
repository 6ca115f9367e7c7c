"""Tests of the simulated (Markov-chain) demo data generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from phonetui.data import simulated as demo

FILES = ("train_11.npy", "train_label_11.npy", "test_11.npy", "test_label_11.npy")


@pytest.fixture(scope="module")
def demo_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo.generate(tmp_path_factory.mktemp("demo") / "timit_11", train_rows=20_000, test_rows=3_000)


@pytest.fixture(scope="module")
def train(demo_set: Path) -> tuple[np.ndarray, np.ndarray]:
    return np.load(demo_set / "train_11.npy"), np.load(demo_set / "train_label_11.npy")


def _utterance_starts(x: np.ndarray) -> np.ndarray:
    """Row indices where the 1-frame overlap with the previous row breaks (plus row 0)."""
    chained = (x[:-1, 39:] == x[1:, :390]).all(axis=1)
    return np.r_[0, np.flatnonzero(~chained) + 1]


def test_shapes_and_dtypes(demo_set: Path) -> None:
    assert sorted(p.name for p in demo_set.iterdir()) == sorted(FILES)
    for split, rows in (("train", 20_000), ("test", 3_000)):
        x = np.load(demo_set / f"{split}_11.npy")
        y = np.load(demo_set / f"{split}_label_11.npy")
        assert x.shape == (rows, 429) and x.dtype == np.float32
        assert y.shape == (rows,) and y.dtype == np.dtype("<U2")
        assert np.isfinite(x).all()
        assert 0.5 < x.std() < 2.0


def test_labels_cover_all_classes(train: tuple[np.ndarray, np.ndarray]) -> None:
    y = train[1].astype(int)
    assert y.min() >= 0 and y.max() <= 38
    counts = np.bincount(y, minlength=39)
    assert (counts > 0).all()
    assert counts.argmax() == demo.SIL


def test_rows_chain_within_utterances(train: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = train
    starts = _utterance_starts(x)
    lengths = np.diff(np.r_[starts, len(x)])
    assert 30 < len(starts) < 200  # a few dozen utterances, not one and not every row
    assert lengths[:-1].mean() > 150
    assert (y[starts] == str(demo.SIL)).all()  # utterances open with silence
    assert (x[1:, 195:234] != x[:-1, 195:234]).any(axis=1).all()  # centre frames move on


def test_edge_frames_repeated(train: tuple[np.ndarray, np.ndarray]) -> None:
    x = train[0]
    frames = x.reshape(len(x), 11, 39)
    starts = _utterance_starts(x)
    ends = np.r_[starts[1:], len(x)] - 1
    assert (frames[starts, :6] == frames[starts, :1]).all()
    assert (frames[ends, 5:] == frames[ends, 5:6]).all()
    second = starts[:-1] + 1  # its window reaches one frame further into the utterance
    assert (frames[second, :5] == frames[second, :1]).all()
    assert (frames[second, 5] != frames[second, 4]).any(axis=1).all()


def test_same_seed_same_files_other_seed_differs(tmp_path: Path) -> None:
    a = demo.generate(tmp_path / "a", train_rows=1_500, test_rows=500, seed=3)
    b = demo.generate(tmp_path / "b", train_rows=1_500, test_rows=500, seed=3)
    c = demo.generate(tmp_path / "c", train_rows=1_500, test_rows=500, seed=4)
    for name in FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert not np.array_equal(np.load(a / "train_11.npy"), np.load(c / "train_11.npy"))
    assert not np.array_equal(np.load(a / "train_11.npy")[:500], np.load(a / "test_11.npy"))


def test_regenerate_replaces_files_without_leftovers(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "timit_11"
    demo.generate(out, train_rows=800, test_rows=200, seed=1)
    demo.generate(out, train_rows=600, test_rows=100, seed=2)
    assert np.load(out / "train_11.npy").shape == (600, 429)
    assert np.load(out / "test_label_11.npy").shape == (100,)
    assert sorted(p.name for p in out.parent.iterdir()) == ["timit_11"]
