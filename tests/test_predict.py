"""Prediction: one `Id,Class` line per test row, in order, from the best model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from phonetui import runs, trainer
from phonetui.errors import PhonetuiError
from phonetui import checkpoint
from phonetui.predict import predict


@pytest.fixture
def trained(tiny, demo, tmp_path):
    return trainer.train(tiny.with_training(epochs=2), demo, tmp_path / "runs")


def test_csv_format_order_and_accuracy(trained, demo):
    p = predict(trained, demo)
    assert p.path == trained.path / runs.PREDICTION and p.rows == len(demo.test_x)
    lines = p.path.read_text().splitlines()
    assert lines[0] == "Id,Class" and len(lines) == len(demo.test_x) + 1
    table = np.loadtxt(p.path, delimiter=",", skiprows=1, dtype=np.int64)
    assert (table[:, 0] == np.arange(len(demo.test_x))).all()
    model, _, _ = checkpoint.load(trained, torch.device("cpu"))
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(demo.test_x[:]).clone()).argmax(1).numpy()
    assert (table[:, 1] == expected).all()
    assert p.test_acc == pytest.approx((expected == demo.test_y).mean())
    assert runs.open_run(trained.path).prediction.test_acc == pytest.approx(p.test_acc)


def test_out_path_and_no_labels(trained, demo, tmp_path):
    unlabelled = type(demo)(**{**demo.__dict__, "test_y": None})
    p = predict(trained, unlabelled, tmp_path / "sub" / "mine.csv")
    assert p.path.is_file() and p.test_acc is None


def test_run_without_model_is_refused(trained, demo):
    (trained.path / runs.CHECKPOINT).unlink()
    with pytest.raises(PhonetuiError, match="no saved model yet"):
        predict(trained, demo)


def test_damaged_checkpoint_is_one_line(trained, demo):
    (trained.path / runs.CHECKPOINT).write_bytes(b"not a checkpoint")
    with pytest.raises(PhonetuiError, match="damaged checkpoint"):
        predict(trained, demo)


def test_prediction_uses_the_runs_precision(tiny, demo, tmp_path):
    run = trainer.train(tiny.with_training(epochs=1, precision="bf16"), demo, tmp_path / "runs")
    table = np.loadtxt(predict(run, demo).path, delimiter=",", skiprows=1, dtype=np.int64)
    model, _, _ = checkpoint.load(run, torch.device("cpu"))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = model.eval()(torch.from_numpy(demo.test_x[:]).clone()).argmax(1).numpy()
    assert (table[:, 1] == expected).all()
