"""Shared fixtures: a tiny demo data set and a tiny preset that trains in a second."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from phonetui import data, runs
from phonetui.config import ModelConfig, RunConfig, TrainConfig

def until_runs_train(runs_dir: Path, n: int = 1, timeout: float = 120) -> None:
    """Wait until `n` runs in `runs_dir` have finished an epoch (each has its metrics.csv): a
    command started in a process of its own is training. Fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while len(list(runs_dir.glob(f"*/{runs.METRICS}"))) < n:
        if time.monotonic() > deadline:
            pytest.fail(f"{runs_dir}: {n} run(s) did not start training within {timeout:g} s")
        time.sleep(0.05)


TINY_PRESET = """
name = "tiny"
description = "a small MLP for tests"
[model]
hidden = [128, 64]
activation = "relu"
batchnorm = true
[training]
lr = 3e-3
batch_size = 128
epochs = 3
val_ratio = 0.2
"""


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory):
    """Keep the tests' utterance caches and demo sets out of the user's cache folder."""
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if before is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = before


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return data.make_demo(tmp_path_factory.mktemp("demo"), train_rows=8000, test_rows=1000, seed=0)


@pytest.fixture(scope="session")
def demo(demo_dir: Path) -> data.TimitData:
    return data.load(demo_dir)


TINY = RunConfig("tiny", "test", ModelConfig(hidden=(128, 64), activation="relu", batchnorm=True),
                 TrainConfig(lr=3e-3, batch_size=128, epochs=3, val_ratio=0.2, device="cpu", precision="fp32"))


@pytest.fixture
def tiny() -> RunConfig:
    return TINY


@pytest.fixture
def presets_dir(tmp_path: Path) -> Path:
    d = tmp_path / "presets"
    d.mkdir()
    (d / "tiny.toml").write_text(TINY_PRESET)
    return d


def write_set(folder: Path, x=None, y=None, test=None, rows: int = 50, width: int = 429) -> Path:
    """A data folder with valid defaults, any of whose arrays can be replaced by a bad one."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / data.TRAIN_X, rng.standard_normal((rows, width), dtype=np.float32) if x is None else x)
    np.save(folder / data.TRAIN_Y, rng.integers(0, 39, rows).astype(str) if y is None else y)
    np.save(folder / data.TEST_X, rng.standard_normal((10, width), dtype=np.float32) if test is None else test)
    return folder
