"""The headless CLI end to end, its one-line errors, Ctrl+C, and the core's independence from Textual."""

from __future__ import annotations

import errno
import os
import shlex
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from phonetui import runs
from phonetui.cli import main

from tests.conftest import write_set


def phonetui(*args, cwd=None, **kw):
    return subprocess.run([sys.executable, "-m", "phonetui", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300, **kw)


@pytest.mark.slow
def test_train_predict_runs_end_to_end(demo_dir, presets_dir, tmp_path):
    r = phonetui("train", "--data", demo_dir, "--presets", presets_dir, "--preset", "tiny", "--epochs", "2",
                 "--runs", tmp_path / "runs", "--predict")
    assert r.returncode == 0, r.stderr
    assert "DEMO " in r.stdout and "[001/002] Train Acc: " in r.stdout and " | Val Acc: " in r.stdout
    assert "saving model with acc 0." in r.stdout and "prediction.csv (1,000 rows, test acc 0." in r.stdout
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert (run_dir / "prediction.csv").is_file()
    listing = phonetui("runs", "--runs", tmp_path / "runs")
    assert run_dir.name in listing.stdout and "finished" in listing.stdout and "2/2" in listing.stdout
    again = phonetui("predict", run_dir, "--out", tmp_path / "again.csv")
    assert again.returncode == 0 and (tmp_path / "again.csv").read_text() == (run_dir / "prediction.csv").read_text()


@pytest.mark.slow
def test_presets_listing():
    out = phonetui("presets").stdout
    assert "baseline" in out and "wide-deep" in out and "1,035,815" in out


@pytest.mark.parametrize("args, words", [
    (["train", "--lr", "-1"], ["--lr -1", "must be > 0"]),
    (["train", "--lr", "abc"], ["--lr abc: not a number"]),
    (["train", "--epochs", "2.5"], ["--epochs 2.5: must be an integer"]),
    (["train", "--val-ratio", "1"], ["--val-ratio 1", "[0, 1)"]),
    (["train", "--precision", "fp8"], ["--precision fp8", "must be one of auto, fp32, tf32, bf16, fp16"]),
    (["train", "--threads", "0"], ["--threads 0", "must be auto or a thread count from 1 to 9999"]),
    (["train", "--lr", "0.001,0.003"], ["--lr 0.001,0.003: a list trains many runs: "
                                        "`phonetui sweep --preset baseline --lr 0.001,0.003`"]),
    (["train", "--lr", "1e-4:1e-2"], ["a range trains many runs: `phonetui search --preset baseline --lr 1e-4:1e-2`"]),
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


def test_demo_data_command_writes_a_marked_loadable_set(tmp_path, capsys):
    from phonetui import data

    simulated = ["demo-data", "--simulated", "--out", str(tmp_path / "d")]
    assert main([*simulated, "--train-rows", "700", "--test-rows", "90", "--seed", "3"]) == 0
    assert "700 train + 90 test rows, seed 3" in capsys.readouterr().out
    d = data.load(tmp_path / "d")
    assert d.demo == "simulated" and len(d.train_x) == 700 and len(d.test_x) == 90 and d.test_y is not None
    assert "DEMO simulated" in d.describe()
    assert main(["demo-data", "--simulated", "--out", str(tmp_path / "e"), "--train-rows", "5"]) == 2
    assert "at least 100 train rows" in capsys.readouterr().err
    assert main(["demo-data", "--out", str(tmp_path / "e"), "--train-rows", "500"]) == 2
    assert "--train-rows and --test-rows are for --simulated" in capsys.readouterr().err
    assert main([*simulated, "--utterances", "5"]) == 2
    assert "--utterances and --test-utterances are for speech" in capsys.readouterr().err


def test_demo_data_never_overwrites_real_data_unless_forced(tmp_path, capsys):
    from phonetui import data

    real = write_set(tmp_path / "real")
    (tmp_path / "labels").mkdir()
    np.save(tmp_path / "labels" / data.TEST_Y, np.zeros(3, np.int64))
    before = (real / data.TRAIN_X).read_bytes()
    for out in (real, tmp_path / "labels"):
        assert main(["demo-data", "--simulated", "--out", str(out), "--train-rows", "200", "--test-rows", "20"]) == 2
        assert "not a phonetui demo set" in capsys.readouterr().err
    assert (real / data.TRAIN_X).read_bytes() == before and (tmp_path / "labels" / data.TEST_Y).exists()
    assert main(["demo-data", "--simulated", "--out", str(real), "--train-rows", "200", "--test-rows", "20",
                 "--force"]) == 0
    assert data.load(real).demo == "simulated"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_ctrl_c_sigterm_and_sighup_stop_cleanly_and_keep_the_best_model(demo_dir, presets_dir, tmp_path, sig):
    # started with the three signals ignored, as a background job of a script would be: still stops
    cmd = shlex.join([sys.executable, "-m", "phonetui", "train", "--data", str(demo_dir), "--presets",
                      str(presets_dir), "--preset", "tiny", "--epochs", "1000", "--runs", str(tmp_path)])
    proc = subprocess.Popen(["sh", "-c", f"trap '' INT TERM HUP; exec {cmd}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(tmp_path.glob("*/best.pt")) and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    (run,) = runs.list_runs(tmp_path)
    by = "the user" if sig == signal.SIGINT else sig.name
    assert run.state == "stopped" and run.status.message == f"stopped by {by}" and run.status.best_epoch >= 1
    assert (run.path / "best.pt").is_file()
    assert "stopped: the best model (epoch " in out


@pytest.mark.slow
def test_a_signal_whose_exception_is_lost_still_stops_the_training(demo, presets_dir, tmp_path, monkeypatch, capsys):
    # a handler's KeyboardInterrupt can be raised where Python drops it (inside a finaliser, say): the
    # stop flag it also sets ends the training at the next batch, with the signal as the reason
    from phonetui import trainer

    class Swallowing(trainer.Progress):
        def __init__(self, *args) -> None:
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
            except KeyboardInterrupt:
                pass
            super().__init__(*args)

    monkeypatch.setattr(trainer, "PROGRESS_EVERY_S", 0.0)
    monkeypatch.setattr(trainer, "Progress", Swallowing)
    assert main(["train", "--data", str(demo.path), "--presets", str(presets_dir), "--preset", "tiny",
                 "--epochs", "2", "--runs", str(tmp_path)]) == 130
    (run,) = runs.list_runs(tmp_path)
    assert run.state == "stopped" and run.status.message == "stopped by SIGTERM" and run.status.epochs_done == 0
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the old handler is back


def test_a_stop_between_saving_the_best_model_and_the_status_still_records_it(demo, presets_dir, tmp_path, monkeypatch):
    # the race behind a flaky signal test: best.pt was written, the status not yet
    from phonetui import diagnostics

    def interrupted(*args):
        raise KeyboardInterrupt("stopped by SIGTERM")

    monkeypatch.setattr(diagnostics, "write", interrupted)  # runs after best.pt, before status.json
    assert main(["train", "--data", str(demo.path), "--presets", str(presets_dir), "--preset", "tiny",
                 "--runs", str(tmp_path)]) == 130
    (run,) = runs.list_runs(tmp_path)
    assert run.state == "stopped" and run.status.epochs_done == 1 and run.status.best_epoch == 1
    assert run.status.best_val_acc == run.metrics()[0].val_acc


@pytest.mark.slow
def test_a_signal_that_cuts_a_save_short_stops_the_run(demo, presets_dir, tmp_path, monkeypatch):
    # torch.save interrupted mid-write raises its own RuntimeError: the run is stopped, not failed
    from phonetui import checkpoint

    def cut(state, tmp):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
        except KeyboardInterrupt:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1984 vs 1878") from None

    monkeypatch.setattr(checkpoint, "_save", cut)
    assert main(["train", "--data", str(demo.path), "--presets", str(presets_dir), "--preset", "tiny",
                 "--runs", str(tmp_path)]) == 130
    (run,) = runs.list_runs(tmp_path)
    assert run.state == "stopped" and run.status.message == "stopped by SIGTERM"
    assert [p.name for p in run.path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_stop_before_any_model_says_so(demo, presets_dir, tmp_path, monkeypatch, capsys):
    from phonetui import trainer

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "_loop", interrupted)
    assert main(["train", "--data", str(demo.path), "--presets", str(presets_dir), "--preset", "tiny",
                 "--runs", str(tmp_path), "--predict"]) == 130
    out = capsys.readouterr().out
    assert "no model was saved yet" in out and "best model so far" not in out
    assert runs.list_runs(tmp_path)[0].state == "stopped"


def test_full_disk_while_saving_fails_the_run_in_one_line(demo, presets_dir, tmp_path, monkeypatch, capsys):
    from phonetui import checkpoint

    def full(state, tmp):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "_save", full)
    assert main(["train", "--data", str(demo.path), "--presets", str(presets_dir), "--preset", "tiny",
                 "--runs", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.strip().endswith("best.pt: cannot write (No space left on device)"), err
    (run,) = runs.list_runs(tmp_path)
    assert run.state == "failed" and run.status.message.endswith("No space left on device)")
    assert [p.name for p in run.path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_full_disk_before_the_run_leaves_no_folder(demo, presets_dir, tmp_path, monkeypatch, capsys):
    from phonetui import fileio

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio.tempfile, "mkstemp", full)
    assert main(["train", "--data", str(demo.path), "--presets", str(presets_dir), "--preset", "tiny",
                 "--runs", str(tmp_path / "runs")]) == 2
    assert "config.toml: cannot write (No space left on device)" in capsys.readouterr().err
    assert list((tmp_path / "runs").iterdir()) == []


@pytest.mark.parametrize("args, words", [
    (["train", "--seed", "9" * 23], ["--seed 999", "from 0 to 2**63 - 1"]),
    (["train", "--epochs", "100001"], ["--epochs 100001", "from 1 to 100000"]),
    (["train", "--runs", "{data}/train_11.npy"], ["train_11.npy", "cannot make a run folder"]),
    (["train", "--data", "{data}/train_11.npy"], ["train_11.npy: not a folder"]),
    (["runs", "--runs", "{data}/train_11.npy"], ["train_11.npy: not a folder"]),
    (["predict", "{data}"], ["not a run folder (no config.toml or status.json)"]),
    (["demo-data", "--simulated", "--out", "{data}/train_11.npy"], ["train_11.npy: not a folder"]),
    (["demo-data", "--simulated", "--out", "{data}", "--train-rows", "9" * 20], ["at most 4,000,000 rows"]),
    (["demo-data", "--out", "{data}", "--utterances", "9" * 12], ["at most 10,000 utterances"]),
    (["demo-data", "--simulated", "--out", "{data}", "--seed", "-1"], ["--seed -1: must be an integer from 0"]),
    (["train", "--device", "cuda:" + "9" * 20], ["must be auto, cpu, cuda, cuda:N or mps"]),
    (["predict", "{data}", "--device", "weird"], ["--device weird: must be auto, cpu"]),
])
def test_more_bad_values_are_one_line(args, words, demo_dir, presets_dir, capsys):
    args = [a.replace("{data}", str(demo_dir)) for a in args]
    if args[0] == "train":
        args += ["--presets", str(presets_dir), "--preset", "tiny"]
        args += [] if "--data" in args else ["--data", str(demo_dir)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("phonetui: error: ") and all(w in err for w in words), err


def test_a_model_too_large_for_memory_is_refused_before_allocating(demo_dir, tmp_path, capsys):
    (tmp_path / "huge.toml").write_text('name = "huge"\n[model]\nhidden = [65536, 65536, 65536]\n')
    assert main(["train", "--data", str(demo_dir), "--presets", str(tmp_path), "--preset", "huge",
                 "--runs", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "model 65536-65536-65536 sigmoid (8,620,802,087 parameters) needs 128.5 GiB" in err and " GiB free" in err
    assert not (tmp_path / "runs").exists()


def test_damaged_runs_are_listed_beside_good_ones(tiny, tmp_path, capsys):
    good, bad = runs.create(tmp_path, tiny, {}), runs.create(tmp_path, tiny, {})
    good.write_status(status="finished")
    good.release(), bad.release()
    (bad.path / runs.STATUS).write_text("[]")
    assert main(["runs", "--runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "finished" in out and "damaged: status.json: expected a JSON object, got list" in out
    assert main(["predict", str(bad.path)]) == 2
    assert capsys.readouterr().err == f"phonetui: error: {bad.path / runs.STATUS}: expected a JSON object, got list\n"


@pytest.mark.parametrize("terminal", [True, False])
def test_runs_never_cuts_a_value_and_takes_a_bare_id_wherever_a_run_is_named(tiny, demo, tmp_path, monkeypatch,
                                                                             capsys, terminal):
    import dataclasses

    from rich.console import Console

    from phonetui import console, trainer

    cfg = dataclasses.replace(tiny, preset="bilstm-small-copy").with_training(epochs=1, lr=0.0001633444833469307)
    run = trainer.train(cfg, demo, tmp_path)
    monkeypatch.setattr(console, "console", Console(width=60, highlight=False, force_terminal=terminal))
    monkeypatch.chdir(tmp_path.parent)
    assert main(["predict", "--runs", tmp_path.name, run.id]) == 0  # the id as `runs` lists it
    capsys.readouterr()
    assert main(["runs", "--runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    test_acc = runs.open_run(run.path).test_acc
    for value in (run.id, "bilstm-small-copy", "0.000163344", "finished", f"{test_acc:.4f}", "test acc"):
        assert value in out, out
    assert main(["runs", "--runs", tmp_path.name, "--show", run.id]) == 0


def test_epochs_given_on_the_command_line_are_trained_as_given(presets_dir):
    from phonetui.cli import parser, resolve_config

    (presets_dir / "long.toml").write_text('name = "long"\n[training]\nepochs = 15\nmin_steps = 900\n')
    args = lambda *a: parser().parse_args(["train", "--presets", str(presets_dir), "--preset", "long", *a])  # noqa: E731
    assert resolve_config(args()).training.min_steps == 900  # the preset's floor
    assert resolve_config(args("--epochs", "2")).training.min_steps == 0  # --epochs 2 means 2 epochs
    cfg = resolve_config(args("--epochs", "2", "--min-steps", "50"))
    assert (cfg.training.epochs, cfg.training.min_steps) == (2, 50)

