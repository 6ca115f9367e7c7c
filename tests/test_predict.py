"""Prediction: one `Id,Class` line per test row, in order, from the best model."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
import torch

from phonetui import checkpoint, fileio, runs, trainer
from phonetui.cli import main
from phonetui.errors import PhonetuiError
from phonetui.predict import predict
from tests.conftest import TINY


@pytest.fixture
def trained(tiny, demo, tmp_path):
    return trainer.train(tiny.with_training(epochs=2), demo, tmp_path / "runs")


@pytest.fixture(scope="module")
def one_epoch(demo, tmp_path_factory):
    """A one-epoch run shared by the tests below (each puts back what it changes)."""
    return trainer.train(TINY.with_training(epochs=1), demo, tmp_path_factory.mktemp("runs"))


def test_csv_format_order_and_accuracy(trained, demo):
    p = predict(trained, demo)
    assert p.path == trained.path / runs.PREDICTION and p.rows == len(demo.test_x)
    lines = p.path.read_text().splitlines()
    assert lines[0] == "Id,Class" and len(lines) == len(demo.test_x) + 1
    table = np.loadtxt(p.path, delimiter=",", skiprows=1, dtype=np.int64)
    assert (table[:, 0] == np.arange(len(demo.test_x))).all()
    model, _, _ = checkpoint.load(trained, torch.device("cpu"))
    with torch.no_grad():
        probs = model.eval()(torch.from_numpy(demo.test_x[:]).clone()).softmax(1)
    expected = probs.argmax(1).numpy()
    top2 = probs.topk(2).values.numpy()
    # the CSV is the argmax of the float16 posterior cache: two classes within float16's resolution of
    # each other can swap (how often depends on the weights, and so on the thread count the run had)
    near_tie = top2[:, 0] - top2[:, 1] < 2**-10
    assert (table[:, 1] == expected)[~near_tie].all() and near_tie.mean() < 0.01
    assert p.test_acc == pytest.approx((table[:, 1] == demo.test_y).mean())
    assert runs.open_run(trained.path).prediction.test_acc == pytest.approx(p.test_acc)


def test_out_path_and_no_labels(trained, demo, tmp_path):
    unlabelled = type(demo)(**{**demo.__dict__, "test_y": None})
    p = predict(trained, unlabelled, tmp_path / "sub" / "mine.csv")
    assert p.path.is_file() and p.test_acc is None


def test_run_without_model_is_refused(trained, demo):
    (trained.path / runs.CHECKPOINT).unlink()
    with pytest.raises(PhonetuiError, match="no saved model yet"):
        predict(trained, demo)


@pytest.mark.parametrize("cut, reason", [(None, "damaged checkpoint (Weights only load failed)"), (0, "(empty file)"),
                                         (1, "damaged checkpoint"), (3000, "damaged checkpoint"),
                                         (-100, "damaged checkpoint")])
def test_damaged_checkpoint_is_one_line(one_epoch, demo, cut, reason):
    path = one_epoch.path / runs.CHECKPOINT
    good = path.read_bytes()
    path.write_bytes(b"not a checkpoint" if cut is None else good[:cut])
    try:
        with pytest.raises(PhonetuiError) as e:
            predict(one_epoch, demo)
        assert str(e.value).startswith(f"{path}: ") and reason in str(e.value) and "\n" not in str(e.value)
    finally:
        path.write_bytes(good)


def test_a_checkpoint_that_is_not_a_file_is_named(one_epoch, demo):
    path = one_epoch.path / runs.CHECKPOINT
    good = path.read_bytes()
    path.unlink()
    os.mkfifo(path)
    try:
        with pytest.raises(PhonetuiError, match=f"^{path}: not a regular file$"):
            predict(one_epoch, demo)
    finally:
        path.unlink()
        path.write_bytes(good)


def test_prediction_never_rewrites_the_training_status(one_epoch, demo):
    before = (one_epoch.path / runs.STATUS).read_bytes()
    predict(one_epoch, demo)
    assert (one_epoch.path / runs.STATUS).read_bytes() == before
    assert runs.open_run(one_epoch.path).prediction.path == str((one_epoch.path / runs.PREDICTION).resolve())


def test_csv_honours_the_umask(one_epoch, demo, tmp_path):
    p = predict(one_epoch, demo, tmp_path / "shared.csv")
    assert p.path.stat().st_mode & 0o777 == fileio.FILE_MODE


def test_prediction_uses_the_runs_precision(tiny, demo, tmp_path):
    run = trainer.train(tiny.with_training(epochs=1, precision="bf16"), demo, tmp_path / "runs")
    table = np.loadtxt(predict(run, demo).path, delimiter=",", skiprows=1, dtype=np.int64)
    model, _, _ = checkpoint.load(run, torch.device("cpu"))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = model.eval()(torch.from_numpy(demo.test_x[:]).clone()).argmax(1).numpy()
    assert (table[:, 1] == expected).all()


def test_an_ensemble_of_one_run_is_that_runs_csv(trained, demo, tmp_path):
    from phonetui.predict import predict_ensemble

    single = predict(trained, demo, tmp_path / "one.csv")
    ens = predict_ensemble([trained], demo, tmp_path / "ens.csv")
    assert ens.path.read_text() == single.path.read_text() and ens.test_acc == single.test_acc
    assert json.loads((tmp_path / "ens.json").read_text())["members"][0]["run"] == trained.id


def test_an_ensemble_averages_its_members_posteriors_and_caches_them(trained, tiny, demo, tmp_path, monkeypatch):
    from phonetui import predict as predict_mod
    from phonetui.predict import POSTERIORS, predict_ensemble, test_posteriors

    other = trainer.train(tiny.with_training(epochs=1, seed=7, smooth=3), demo, tmp_path / "b")
    members = [trained, other]
    expected = sum(test_posteriors(r, demo).astype(np.float32) for r in members).argmax(1)
    assert all((r.path / POSTERIORS).is_file() for r in members)
    monkeypatch.setattr(predict_mod, "posteriors", lambda *a, **k: pytest.fail("the cache was not used"))
    p = predict_ensemble(members, demo, tmp_path / "ens.csv")
    table = np.loadtxt(p.path, delimiter=",", skiprows=1, dtype=np.int64)
    assert (table[:, 1] == expected).all() and p.test_acc == pytest.approx((expected == demo.test_y).mean())
    record = json.loads((tmp_path / "ens.json").read_text())
    assert [m["run"] for m in record["members"]] == [trained.id, other.id] and record["test_acc"] == p.test_acc
    assert [m["weight"] for m in record["members"]] == [0.5, 0.5]


def test_a_stale_posterior_cache_is_computed_again(trained, demo, tmp_path):
    from phonetui.predict import POSTERIORS_KEY, test_posteriors

    first = test_posteriors(trained, demo)
    key = trained.path / POSTERIORS_KEY
    key.write_text(key.read_text().replace('"model_size": ', '"model_size": 1'))  # as if best.pt had changed
    again = test_posteriors(trained, demo)
    assert np.array_equal(first, again) and json.loads(key.read_text())["model_size"] == (trained.path / "best.pt").stat().st_size


def test_an_ensemble_from_the_cli_refuses_a_run_of_another_width(trained, demo_dir, tmp_path, capsys):
    from phonetui import data as data_mod

    narrow_dir = tmp_path / "narrow"
    narrow_dir.mkdir()
    for name in (data_mod.TRAIN_X, data_mod.TEST_X):
        np.save(narrow_dir / name, np.ascontiguousarray(np.load(demo_dir / name)[:, :390]))
    for name in (data_mod.TRAIN_Y, data_mod.TEST_Y):
        np.save(narrow_dir / name, np.load(demo_dir / name))
    narrow = trainer.train(trained.config.with_training(epochs=1), data_mod.load(narrow_dir), tmp_path / "runs")
    assert main(["predict", str(trained.path), str(narrow.path), "--data", str(demo_dir), "--out",
                 str(tmp_path / "e.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{narrow.id}'s model expects 390" in err
    assert main(["predict", str(trained.path), str(trained.path), "--data", str(demo_dir)]) == 2
    assert "a run is named twice" in capsys.readouterr().err


def test_viterbi_decoding_from_the_cli_tunes_its_scale_on_validation(trained, demo_dir, tmp_path, capsys):
    from phonetui.decode import SCALES

    out = tmp_path / "v.csv"
    assert main(["predict", str(trained.path), "--data", str(demo_dir), "--decode", "viterbi", "--out", str(out)]) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["decode"] == "viterbi" and record["scale"] in SCALES and 0 < record["val_acc"] <= 1
    table = np.loadtxt(out, delimiter=",", skiprows=1, dtype=np.int64)
    assert len(table) == 1000 and record["test_acc"] == pytest.approx(float((table[:, 1] == np.load(demo_dir / "test_label_11.npy").astype(np.int64)).mean()))
    assert "tuned on the validation split" in capsys.readouterr().out


def test_validation_weights_favour_the_better_member_and_never_read_the_test_labels(trained, tiny, demo, tmp_path, monkeypatch):
    from phonetui import predict as predict_mod
    from phonetui.predict import VAL_POSTERIORS, predict_ensemble, test_posteriors, val_posteriors

    weak = trainer.train(tiny.with_training(epochs=1, lr=1e-5, seed=3), demo, tmp_path / "runs")
    starts = demo.utterance_starts
    n = int(starts[starts >= trained.record["train_rows"]][0])  # the validation rows from the next utterance on
    y_val = demo.train_y[n:]
    accs = [float((val_posteriors(r, demo, n).argmax(1) == y_val).mean()) for r in (trained, weak)]
    assert accs[0] > accs[1] and all((r.path / VAL_POSTERIORS).is_file() for r in (trained, weak))
    for r in (trained, weak):
        test_posteriors(r, demo)
    no_test = dataclasses.replace(demo, test_y=None)  # the weights come from validation alone
    monkeypatch.setattr(predict_mod, "posteriors", lambda *a, **k: pytest.fail("a cache was not used"))
    predict_ensemble([trained, weak], no_test, tmp_path / "w.csv", weights="val")
    record = json.loads((tmp_path / "w.json").read_text())
    w = [m["weight"] for m in record["members"]]
    assert record["weights_from"] == "val" and w[0] > w[1] and sum(w) == pytest.approx(1)
    assert record["test_acc"] is None and 0 < record["val_acc_argmax"] <= 1


def test_val_weights_minimise_the_validation_log_loss() -> None:
    from phonetui.predict import val_weights

    y = np.zeros(100, dtype=np.int64)
    good, bad = np.full((100, 39), 0.01, np.float32), np.full((100, 39), 1 / 39, np.float32)
    good[:, 0] = 0.62
    w = val_weights([bad, good], y)
    assert w[1] > 0.95 and w.sum() == pytest.approx(1)
    assert np.allclose(val_weights([good, good], y), [0.5, 0.5])


def test_an_mlp_and_a_tagger_tune_their_ensemble_on_the_validation_rows_both_left_out(trained, demo, tmp_path):
    from phonetui.config import ModelConfig
    from phonetui.predict import predict_ensemble

    tagger = trainer.train(dataclasses.replace(trained.config, model=ModelConfig(kind="tagger", cell="conv", layers=2, size=16))
                           .with_training(epochs=1, batch_size=4), demo, tmp_path / "runs")
    n_mlp, n_tag = trained.record["train_rows"], tagger.record["train_rows"]
    assert n_mlp != n_tag  # rows against whole utterances: two different splits
    predict_ensemble([trained, tagger], demo, tmp_path / "mix.csv", decode="viterbi", weights="val")
    record = json.loads((tmp_path / "mix.json").read_text())
    start = record["val_from_row"]
    assert start >= max(n_mlp, n_tag) and start in set(demo.utterance_starts.tolist())
    assert record["weights_from"] == "val" and 0 < record["val_acc"] <= 1
