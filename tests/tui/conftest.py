"""Fixtures for the TUI tests: a tiny demo set, a tiny preset, a fresh working folder, a fixed clock."""

from __future__ import annotations

import asyncio
import inspect
import time
from pathlib import Path
from typing import Callable

import pytest

from phonetui.cli import parser
from phonetui.data import make_demo
from phonetui.tui.app import PhonetuiApp
from phonetui.tui.settings import Settings

TINY = """name = "tiny"
description = "Test MLP 429-32-39, ReLU, Adam 1e-3, batch 256"
[model]
hidden = [32]
activation = "relu"
[training]
lr = 1e-3
batch_size = 256
epochs = 3
val_ratio = 0.2
seed = 0
precision = "fp32"
"""


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> None:
    """One intra-op thread: on a small shared CPU, OpenMP spin-waiting beside the UI thread and other
    processes can slow training tenfold; one thread is fast and gives the same numbers every run."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo(tmp_path_factory.mktemp("data") / "demo", train_rows=3000, test_rows=500, seed=0)


@pytest.fixture(scope="session")
def presets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("presets")
    (d / "tiny.toml").write_text(TINY)
    return d


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_dir: Path, presets_dir: Path) -> Path:
    """A fresh current folder holding ./demo and ./tiny-presets links, so every path shown is relative."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").symlink_to(demo_dir)
    (tmp_path / "tiny-presets").symlink_to(presets_dir)
    return tmp_path


@pytest.fixture
def make_app(workdir: Path) -> Callable[..., PhonetuiApp]:
    """PhonetuiApp from command-line flags, on the tiny demo set with the tiny preset by default."""

    def make(*flags: str) -> PhonetuiApp:
        base = ["--data", "demo", "--presets", "tiny-presets", "--preset", "tiny"]
        return PhonetuiApp(Settings.from_args(parser().parse_args([*base, *flags])))

    return make


class FixedClock:
    """Stands in for the `time` module of the trainer and the run store: a fixed date, a steady counter."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        self.now += 0.01
        return self.now

    @staticmethod
    def monotonic() -> float:
        return 0.0  # the app's elapsed and remaining times read 0:00

    @staticmethod
    def strftime(fmt: str) -> str:
        return time.strftime(fmt, time.struct_time((2021, 3, 1, 12, 0, 0, 0, 60, 0)))


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> FixedClock:
    """Deterministic run ids, dates, epoch seconds, frames/s and the app's run times (for snapshots)."""
    import phonetui.runs
    import phonetui.trainer
    import phonetui.tui.training

    clock = FixedClock()
    monkeypatch.setattr(phonetui.trainer, "time", clock)
    monkeypatch.setattr(phonetui.runs, "time", clock)
    monkeypatch.setattr(phonetui.tui.training, "time", clock)
    return clock


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run `async def` tests with asyncio.run (no async plugin needed)."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    asyncio.run(pyfuncitem.obj(**{name: pyfuncitem.funcargs[name] for name in names}))
    return True
