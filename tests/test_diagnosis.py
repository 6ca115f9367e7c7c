"""The diagnosis: the four student runs of the shared log read as a teacher would read them, and
runs trained here that overfit, stall or diverge; the CLI prints it after `train` and in `runs --show`."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import pytest

from phonetui import diagnosis, importing, trainer
from phonetui.cli import main
from phonetui.diagnosis import FindingId
from phonetui.noise import Interval
from phonetui.runs import EpochMetrics, StepPoint

BLOCKS = re.findall(r"```\n(.*?)```", (Path(__file__).parent / "data" / "student-runs.md").read_text(), re.S)
LR = [1e-4, 1e-4, 1e-5, 1e-4]  # as the student described each run


def student(k: int) -> tuple[list[EpochMetrics], int]:
    log = importing.parse(BLOCKS[k], f"run {k + 1}")
    return [dataclasses.replace(m, lr=LR[k]) for m in log.epochs], log.total


def ids(found) -> list[str]:
    return [str(f.id) for f in found]


def test_run_1_the_sample_code_overfits_from_epoch_16_and_its_last_save_is_noise() -> None:
    metrics, total = student(0)
    found = diagnosis.diagnose(metrics, epochs=total, lr=1e-4, val_ratio=0.2)
    assert ids(found) == ["overfitting", "plateau"]
    over, flat = found
    assert "since epoch 16" in over.evidence and "0.7044 at epoch 15" in over.evidence and over.change == {"patience": 3}
    assert "'saving model' (epoch 15, +0.23 pts) was within noise" in flat.evidence  # 0.704 after 0.703: not progress


def test_run_2_batch_16_overfits_from_the_9th_epoch() -> None:
    metrics, total = student(1)
    found = diagnosis.diagnose(metrics, epochs=total, lr=1e-4, val_ratio=0.2)
    assert ids(found)[0] == "overfitting"
    assert "since epoch 10 (0.9288 -> 1.0588)" in found[0].evidence and "at epoch 9" in found[0].evidence


def test_run_3_lr_1e5_for_200_epochs_is_too_low() -> None:
    metrics, total = student(2)
    found = diagnosis.diagnose(metrics, epochs=total, lr=1e-5, val_ratio=0.2)
    assert ids(found) == ["lr-too-low"]
    assert found[0].change == {"lr": pytest.approx(1e-4)} and "0.14% an epoch" in found[0].evidence


def test_run_4_the_deep_net_is_still_improving_with_62_epochs_to_come() -> None:
    metrics, total = student(3)
    found = diagnosis.diagnose(metrics, epochs=total, lr=1e-4, val_ratio=0.2)
    assert ids(found) == ["still-improving"]
    assert "62 epochs to come" in found[0].suggestion and found[0].change == {}  # the run goes on by itself
    ended = diagnosis.diagnose(metrics, epochs=38, lr=1e-4)
    assert ended[0].change == {"epochs": 76}  # a run that stopped there: train longer


def _curve(val_accs, train_losses=None, val_losses=None) -> list[EpochMetrics]:
    n = len(val_accs)
    train_losses = train_losses or [1.0 - 0.01 * i for i in range(n)]
    val_losses = val_losses or [1.0 - 0.005 * i for i in range(n)]
    return [EpochMetrics(i + 1, 0.7, train_losses[i], val_accs[i], val_losses[i], 1e-3, 1.0) for i in range(n)]


def test_a_wide_interval_is_noisy_validation_and_a_nan_is_lr_too_high() -> None:
    metrics = _curve([0.70, 0.702, 0.701, 0.703, 0.702, 0.7025])
    wide = Interval(0.7025, 0.690, 0.715)
    found = diagnosis.diagnose(metrics, interval=wide, val_ratio=0.1)
    assert "noisy-validation" in ids(found) and found[-1].change == {"val_ratio": 0.15}
    assert "noisy-validation" not in ids(diagnosis.diagnose(metrics, interval=Interval(0.7025, 0.7015, 0.7035)))
    broken = metrics[:3] + [dataclasses.replace(metrics[3], train_loss=math.nan)]
    assert ids(diagnosis.diagnose(broken, lr=1e-3)) == ["lr-too-high"]
    steps = [StepPoint(1, 0.5, 10, 2.0, 0.3, 1e-3), StepPoint(1, 0.9, 20, 3.5, 0.1, 1e-3)]  # a jump inside epoch 1
    jumped = diagnosis.diagnose(metrics[:1], steps, lr=1e-3)
    assert ids(jumped) == ["lr-too-high"] and "inside epoch 1" in jumped[0].evidence and jumped[0].change == {"lr": 3e-4}
    assert diagnosis.diagnose([]) == []


@pytest.fixture(scope="module")
def trained(tiny_module, demo_module, tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("runs")
    return {name: trainer.train(tiny_module.with_training(**kw), demo_module, runs_dir) for name, kw in
            {"diverge": dict(lr=5.0, epochs=3), "overfit": dict(lr=3e-3, epochs=14, batch_size=32),
             "stall": dict(lr=2e-6, epochs=32)}.items()}


@pytest.fixture(scope="module")
def tiny_module():
    from tests.conftest import TINY

    return TINY


@pytest.fixture(scope="module")
def demo_module(demo_dir):
    from phonetui import data

    return data.load(demo_dir)


@pytest.mark.slow
def test_runs_trained_here_that_diverge_overfit_and_stall(trained) -> None:
    assert ids(diagnosis.of_run(trained["diverge"])) == [FindingId.LR_TOO_HIGH]
    assert ids(diagnosis.of_run(trained["overfit"]))[0] == FindingId.OVERFITTING
    assert FindingId.LR_TOO_LOW in ids(diagnosis.of_run(trained["stall"]))


def test_the_cli_prints_the_diagnosis_after_train_and_in_runs_show(demo_dir, presets_dir, tmp_path, capsys) -> None:
    runs_dir = str(tmp_path / "runs")
    assert main(["train", "--data", str(demo_dir), "--presets", str(presets_dir), "--runs", runs_dir, "--preset", "tiny",
                 "--epochs", "2", "--lr", "5"]) == 0
    out = capsys.readouterr().out
    assert "diagnosis [lr-too-high] train loss " in out and "  next: lower the lr (x0.3): 1.5" in out
    assert main(["runs", "--runs", runs_dir, "--show", next(Path(runs_dir).iterdir()).name]) == 0
    shown = capsys.readouterr().out
    assert "diagnosis [lr-too-high]" in shown and "accuracy" in shown  # then the phones


def test_a_short_run_whose_last_gain_is_beyond_noise_is_still_improving() -> None:
    m = [EpochMetrics(1, 0.50, 1.81, 0.6417, 1.28, 1e-4, 34.0), EpochMetrics(2, 0.69, 1.09, 0.7365, 0.93, 1e-4, 39.0),
         EpochMetrics(3, 0.77, 0.81, 0.7945, 0.73, 1e-4, 37.0, None, 0.0547, 0.0615)]  # README command 1's run
    found = diagnosis.diagnose(m, epochs=3, lr=1e-4)
    assert ids(found) == ["still-improving"] and "gained +5.80 pts over the best before it, beyond noise" in found[0].evidence
    assert found[0].change == {"epochs": 13}
    within = [*m[:2], dataclasses.replace(m[2], gain_lo=-0.001)]
    assert diagnosis.diagnose(within, epochs=3) == []
    assert "would add up to +20.55 pts" in found[0].suggestion  # the slope carried on, but never past 100%
