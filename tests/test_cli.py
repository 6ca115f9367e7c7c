"""The headless CLI end to end, its one-line errors, Ctrl+C, and the core's independence from Textual."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from phonetui import runs
from phonetui.cli import main

from tests.conftest import write_set


def phonetui(*args, cwd=None, **kw):
    return subprocess.run([sys.executable, "-m", "phonetui", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300, **kw)


def test_train_predict_runs_end_to_end(demo_dir, presets_dir, tmp_path):
    r = phonetui("train", "--data", demo_dir, "--presets", presets_dir, "--preset", "tiny", "--epochs", "2",
                 "--runs", tmp_path / "runs", "--predict")
    assert r.returncode == 0, r.stderr
    assert "DEMO data" in r.stdout and "[001/002] Train Acc: " in r.stdout and " | Val Acc: " in r.stdout
    assert "saving model with acc 0." in r.stdout and "prediction.csv (1,000 rows, test acc 0." in r.stdout
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert (run_dir / "prediction.csv").is_file()
    listing = phonetui("runs", "--runs", tmp_path / "runs")
    assert run_dir.name in listing.stdout and "finished" in listing.stdout and "2/2" in listing.stdout
    again = phonetui("predict", run_dir, "--out", tmp_path / "again.csv")
    assert again.returncode == 0 and (tmp_path / "again.csv").read_text() == (run_dir / "prediction.csv").read_text()


def test_presets_listing():
    out = phonetui("presets").stdout
    assert "baseline" in out and "wide-deep" in out and "1,035,815" in out


@pytest.mark.parametrize("args, words", [
    (["train", "--lr", "-1"], ["--lr -1", "must be > 0"]),
    (["train", "--val-ratio", "1"], ["--val-ratio 1", "[0, 1)"]),
    (["train", "--precision", "fp16"], ["--precision fp16", "must be one of auto, fp32, bf16"]),
    (["train", "--preset", "nope"], ["unknown preset 'nope'"]),
    (["train", "--data", "/nonexistent/timit"], ["/nonexistent/timit", "not found"]),
    (["predict", "/tmp"], ["/tmp", "not a run folder"]),
    (["train", "--presets", "/nonexistent/p"], ["/nonexistent/p", "presets folder not found"]),
])
def test_bad_input_is_one_line_with_exit_code_2(args, words, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("phonetui: error: ") and "Traceback" not in err
    assert all(w in err for w in words), err


def test_bad_data_file_names_it(tmp_path, capsys):
    write_set(tmp_path, y=["x"] * 50)
    assert main(["train", "--data", str(tmp_path)]) == 2
    assert f"{tmp_path / 'train_label_11.npy'}: label 'x' at row 0 is not an integer" in capsys.readouterr().err


def test_ctrl_c_stops_cleanly_and_keeps_the_best_model(demo_dir, presets_dir, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "phonetui", "train", "--data", str(demo_dir), "--presets",
                             str(presets_dir), "--preset", "tiny", "--epochs", "1000", "--runs", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(tmp_path.glob("*/best.pt")) and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "stopped: the best model (epoch " in out and "Traceback" not in err
    assert "`phonetui resume " in out
    (run,) = runs.list_runs(tmp_path)
    assert run.state == "stopped" and (run.path / "best.pt").is_file() and run.status["best_epoch"] >= 1


def test_core_never_imports_textual():
    code = ("import sys, phonetui.cli, phonetui.trainer, phonetui.predict, phonetui.data, phonetui.runs, "
            "phonetui.presets, phonetui.models, phonetui.data.simulated, phonetui.data.speech; "
            "bad = [m for m in sys.modules if m.split('.')[0] == 'textual']; assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ})
    assert r.returncode == 0, r.stderr


def test_demo_data_command_writes_a_marked_loadable_set(tmp_path, capsys):
    from phonetui import data

    simulated = ["demo-data", "--simulated", "--out", str(tmp_path / "d")]
    assert main([*simulated, "--train-rows", "700", "--test-rows", "90", "--seed", "3"]) == 0
    assert "700 train + 90 test rows, seed 3" in capsys.readouterr().out
    d = data.load(tmp_path / "d")
    assert d.demo == "simulated" and len(d.train_x) == 700 and len(d.test_x) == 90 and d.test_y is not None
    assert "DEMO data (simulated)" in d.describe()
    assert main(["demo-data", "--simulated", "--out", str(tmp_path / "e"), "--train-rows", "5"]) == 2
    assert "at least 100 train rows" in capsys.readouterr().err
    assert main(["demo-data", "--out", str(tmp_path / "e"), "--train-rows", "500"]) == 2
    assert "--train-rows and --test-rows are for --simulated" in capsys.readouterr().err
    assert main([*simulated, "--utterances", "5"]) == 2
    assert "--utterances and --test-utterances are for speech" in capsys.readouterr().err


def test_demo_data_never_overwrites_real_data(tmp_path, capsys):
    from phonetui import data

    real = write_set(tmp_path / "real")
    before = (real / data.TRAIN_X).read_bytes()
    assert main(["demo-data", "--simulated", "--out", str(real), "--train-rows", "200", "--test-rows", "20"]) == 2
    assert "not a phonetui demo set" in capsys.readouterr().err
    assert (real / data.TRAIN_X).read_bytes() == before
