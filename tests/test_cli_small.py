"""`resume --epochs N` (a run trained on past its end), the presets in the help, and the line
`phonetui` prints when quitting the app stopped a run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from phonetui import runs, trainer
from phonetui import cli
from phonetui.cli import main


def test_resume_epochs_trains_a_finished_run_on(tiny, demo, tmp_path, capsys) -> None:
    run = trainer.train(tiny.with_training(epochs=2, min_steps=5), demo, tmp_path)
    assert run.state == "finished"
    assert main(["resume", str(run.path)]) == 2  # finished: still refused without --epochs, saying what trains it on
    assert "finished, nothing to resume (train it on with more epochs: --epochs N)" in capsys.readouterr().err
    assert main(["resume", str(run.path), "--epochs", "2"]) == 2
    assert f"--epochs 2: {run.id} has trained 2 epochs; give more to train on" in capsys.readouterr().err
    assert runs.open_run(run.path).config.training.epochs == 2  # a refusal changes nothing

    assert main(["resume", str(run.path), "--epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert "(finished, 2/2 epochs, on to 3)" in out and "[003/003] Train Acc" in out
    done = runs.open_run(run.path)
    assert done.state == "finished" and done.status.epochs_done == 3 and len(done.metrics()) == 3
    assert done.status.message == "resumed after epoch 2, epochs 2 -> 3"
    assert done.config.training.epochs == 3 and done.config.training.min_steps == 0  # trained as given
    assert "epochs = 3" in (run.path / runs.CONFIG).read_text()


def test_resume_epochs_spans_a_cosine_schedule_over_the_new_total(tiny, demo, tmp_path) -> None:
    run = trainer.train(tiny.with_training(epochs=2, schedule="cosine", lr=1e-3), demo, tmp_path)
    before = [m.lr for m in run.metrics()]
    more = trainer.resume(runs.open_run(run.path), demo, epochs=3)
    assert more.status.message == "resumed after epoch 2, epochs 2 -> 3 (its cosine schedule now spans 3)"
    lrs = [m.lr for m in more.metrics()]
    assert lrs[:2] == before  # the epochs before are kept as they trained
    assert lrs[2] == pytest.approx(0.25e-3, rel=1e-4)  # step 2/3 of the way down a cosine over 3 epochs


def test_help_names_the_presets_without_loading_torch(tmp_path) -> None:
    for command in ([], ["train"]):
        r = subprocess.run([sys.executable, "-X", "importtime", "-m", "phonetui", *command, "--help"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0
        assert "presets: baseline, " in r.stdout and ", tiny, " in r.stdout.replace("\n", " ")
        assert not [line for line in r.stderr.splitlines() if line.split("|")[-1].strip() == "torch"]


def test_a_broken_preset_spoils_only_the_help_line(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "bad.toml").write_text("name = \n")
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "presets: cannot list them (presets/bad.toml: not valid TOML" in capsys.readouterr().out


def test_quitting_the_app_says_which_run_it_stopped(monkeypatch, capsys) -> None:
    import phonetui.tui.app

    path = Path("runs/20260101-120000-tiny")
    left = SimpleNamespace(path=path, status=runs.RunStatus(status="stopped", epochs_done=3))

    class App:  # the app quit while training: `stopped_run` is the run it stopped
        def __init__(self, settings) -> None:
            self.stopped_run = None

        def run(self) -> None:
            self.stopped_run = left

    monkeypatch.setattr(phonetui.tui.app, "PhonetuiApp", App)
    assert main([]) == 0
    assert capsys.readouterr().out == f"stopped run {path} after epoch 3: `phonetui resume {path}` continues it\n"
    left.status.epochs_done = 0
    assert cli.left_line(left) == f"stopped run {path} before its first epoch ended: nothing to resume"
