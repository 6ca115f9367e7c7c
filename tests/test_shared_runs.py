"""Run folders someone else made or shares: links inside them, damaged posterior caches, a run still
training, an ensemble of runs trained on other data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from phonetui import predict as predicting
from phonetui import runs, trainer
from phonetui.errors import PhonetuiError
from tests.conftest import TINY


@pytest.fixture(scope="module")
def predicted(demo, tmp_path_factory):
    """A finished run, predicted once (its posterior cache exists), and its clean CSV's text."""
    run = trainer.train(TINY.with_training(epochs=1), demo, tmp_path_factory.mktemp("runs"))
    p = predicting.predict(run, demo)
    return run, p.path.read_text()


def test_a_link_in_a_run_folder_is_replaced_never_followed(predicted, demo, tmp_path):
    run, clean = predicted
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    csv = run.path / runs.PREDICTION
    csv.unlink()
    csv.symlink_to(notes)  # ln -sf ~/notes.txt $R/prediction.csv
    predicting.predict(runs.open_run(run.path), demo)
    assert notes.read_text() == "my notes\n"
    assert not csv.is_symlink() and csv.read_text() == clean


def test_an_ensemble_s_default_csv_replaces_a_link_and_a_named_out_follows_it(predicted, demo, tmp_path):
    run, clean = predicted
    other = trainer.train(TINY.with_training(epochs=1, seed=3), demo, run.path.parent)
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    default = run.path.parent / "ensemble-x.csv"
    default.symlink_to(notes)
    predicting.predict_ensemble([run, other], demo, default, follow_link=False)  # the app's export, a path of its own
    assert notes.read_text() == "my notes\n" and not default.is_symlink()
    named = tmp_path / "link.csv"
    named.symlink_to(notes)
    predicting.predict_ensemble([run, other], demo, named, follow_link=True)  # an --out the user named: written through
    assert named.is_symlink() and notes.read_text().startswith("Id,Class\n")


def _fifo(path):
    os.mkfifo(path)


@pytest.mark.parametrize("damage, why", [
    (lambda p: p.write_bytes(b""), "an empty file"),
    (lambda p: p.write_bytes(b"\x93NUMPY garbage"), "not a readable .npy file"),
    ("nan", "values that are not finite (NaN or Inf)"),
    ("minus", "values outside [0, 1]"),
    ("unnormalised", "rows that do not sum to one"),
    ("float32", "float32 of shape (1000, 39), not float16 (1000, 39)"),
    ("pickle", "not a readable .npy file"),
    (_fifo, "not a regular file"),
])
@pytest.mark.slow
def test_a_damaged_posterior_cache_is_computed_again_with_one_line(predicted, demo_dir, damage, why):
    """Each as `phonetui predict R` in a process of its own, with a time limit (a FIFO once hung it)."""
    run, clean = predicted
    cache = run.path / predicting.POSTERIORS
    good = np.load(cache)
    cache.unlink()
    if callable(damage):
        damage(cache)
    else:
        bad = {"nan": np.full_like(good, np.nan), "minus": np.full_like(good, -1),
               "unnormalised": np.full_like(good, 0.5), "float32": good.astype(np.float32),
               "pickle": np.array([{"a": 1}] * 3, dtype=object)}[damage]
        with open(cache, "wb") as f:
            np.save(f, bad, allow_pickle=True)
    before = json.loads((run.path / runs.PREDICTION_RECORD).read_text())["test_acc"]
    r = subprocess.run([sys.executable, "-m", "phonetui", "predict", str(run.path), "--data", str(demo_dir)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert f"{cache}: damaged posterior cache ({why}" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert (run.path / runs.PREDICTION).read_text() == clean  # the right CSV, from the recomputed cache
    assert json.loads((run.path / runs.PREDICTION_RECORD).read_text())["test_acc"] == before
    assert predicting.cache_problem(cache, len(good))[1] == ""  # and a sound cache in its place


def test_a_sound_cache_is_used_as_it_is(predicted, demo):
    run, _ = predicted
    cache = run.path / predicting.POSTERIORS
    probs, why = predicting.cache_problem(cache, len(demo.test_x))
    assert why == "" and probs.dtype == np.float16
    heard = []
    predicting.test_posteriors(runs.open_run(run.path), demo, say=heard.append)
    assert heard == []


def test_a_run_still_training_is_not_predicted(demo, tmp_path):
    run = runs.create(tmp_path / "runs", TINY, {"data": str(demo.path.resolve())})  # this process holds its lock
    try:
        (run.path / runs.CHECKPOINT).write_bytes(b"")
        with pytest.raises(PhonetuiError, match=r": still training \(pid \d+\): wait for it to finish, or stop it"):
            predicting.predict(runs.open_run(run.path), demo)
    finally:
        run.release()


def test_an_ensemble_tuned_on_validation_refuses_runs_of_other_data(predicted, demo, tmp_path):
    run, _ = predicted
    moved = tmp_path / "elsewhere"
    shutil.copytree(demo.path, moved)
    from phonetui import data

    elsewhere = data.load(moved)
    other = trainer.train(TINY.with_training(epochs=1, seed=5), elsewhere, tmp_path / "runs")
    for how in ({"weights": "val"}, {"decode": "viterbi"}):
        with pytest.raises(PhonetuiError, match=f"{other.id} trained on {moved.resolve()}, not "
                                                f"{demo.path.resolve()}: its validation rows are not rows of this data"):
            predicting.predict_ensemble([run, other], demo, tmp_path / "e.csv", **how)
    predicting.predict_ensemble([run, other], demo, tmp_path / "e.csv")  # equal weights, argmax: nothing tuned
