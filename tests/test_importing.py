"""`phonetui import`: a notebook's epoch lines as a run folder (imported, finished, no model), read
from the four real runs of tests/data/student-runs.md; its one-line refusals leave no folder."""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

import pytest

from phonetui import runs
from phonetui.cli import main

STUDENT = Path(__file__).parent / "data" / "student-runs.md"
BLOCKS = re.findall(r"^```\n(.*?)^```$", STUDENT.read_text(), re.S | re.M)  # the four runs' lines, in order
# what the student said of each run's settings (the course sample code's otherwise)
SETS = [[], ["batch_size=16"], ["lr=1e-5", "batch_size=256"],
        ["hidden=2048,2048,2048,1024,512,256", "activation=leaky_relu", "batchnorm=true", "dropout=0.5"]]
BEST = [(15, 0.704427), (9, 0.703883), (198, 0.675935), (38, 0.760471)]  # the highest val acc of the lines kept


def expected(block: str) -> list[tuple[float, ...]]:
    """(epoch, total, train acc, train loss, val acc, val loss) of each epoch line, read by splitting."""
    rows = []
    for line in block.splitlines():
        if "Train Acc:" in line:
            words = line[line.index("["):].split()
            epoch, total = words[0].strip("[]").split("/")
            rows.append((int(epoch), int(total), *(float(words[i]) for i in (3, 5, 9, 11))))
    return rows


def same_lines(got: list[runs.EpochMetrics], total: int, rows: list[tuple[float, ...]]) -> bool:
    """The epochs read back are the lines' (metrics.csv keeps 6 significant digits, as for a trained run)."""
    return len(got) == len(rows) and all(
        (m.epoch, total, m.train_acc, m.train_loss, m.val_acc, m.val_loss) == pytest.approx(row, rel=1e-5)
        for m, row in zip(got, rows))


def run_import(tmp_path: Path, text: str, *args: str, name: str = "notebook.log") -> int:
    log = tmp_path / name
    log.write_text(text)
    return main(["import", str(log), "--runs", str(tmp_path / "runs"), *args])


def only_run(tmp_path: Path) -> runs.Run:
    (run,) = runs.list_runs(tmp_path / "runs")
    assert isinstance(run, runs.Run)
    return run


def assert_refused(capsys, tmp_path: Path, *words: str) -> None:
    """One line on stderr naming the problem, and no run folder made."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("phonetui: error: ") and "Traceback" not in err, err
    assert all(w in err for w in words), err
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("i", range(4))
def test_each_student_run_imports_as_a_finished_run_without_a_model(i, tmp_path, capsys):
    sets = [a for s in SETS[i] for a in ("--set", s)]
    assert run_import(tmp_path, BLOCKS[i], *sets, name=f"run{i + 1}.log") == 0
    run = only_run(tmp_path)
    rows = expected(BLOCKS[i])
    assert run.id.endswith(f"-run{i + 1}") and str(run.path) in capsys.readouterr().out
    assert run.state == "imported" and run.status.status == "finished" and run.status.outcome == runs.Outcome.IMPORTED
    assert run.status.epochs_done == rows[-1][0] and run.config.training.epochs == rows[0][1]
    assert (run.status.best_epoch, run.status.best_val_acc) == BEST[i]
    got = run.metrics()
    assert same_lines(got, run.config.training.epochs, rows)
    assert all(m.lr == run.config.training.lr and math.isnan(m.seconds) for m in got)
    assert run.info.imported == str((tmp_path / f"run{i + 1}.log").resolve()) and run.record["imported_at"]
    assert not (run.path / runs.CHECKPOINT).exists() and not (run.path / runs.LAST).exists()
    assert run.config.preset == "baseline"


def test_settings_are_the_sample_code_s_with_the_sets_applied(tmp_path):
    sets = [a for s in SETS[3] for a in ("--set", s)]
    assert run_import(tmp_path, BLOCKS[3], *sets, "--set", "lr=3e-4", "--set", "val_ratio=0.1") == 0
    cfg = only_run(tmp_path).config
    assert cfg.model.hidden == (2048, 2048, 2048, 1024, 512, 256) and cfg.model.activation == "leaky_relu"
    assert cfg.model.batchnorm and cfg.model.dropout == 0.5
    assert (cfg.training.lr, cfg.training.batch_size, cfg.training.epochs, cfg.training.val_ratio) == (3e-4, 64, 100, 0.1)


def test_notebook_prefixes_and_crlf_read_the_same_lines(tmp_path):
    lines = [line for line in BLOCKS[0].splitlines() if line]
    prefixes = ["2021-03-04 10:00:01 ", "12: ", "In [5]: ", "25346.1s 81 ", "", "\t", "[I 10:00] ", "> "]
    text = "".join(f"{prefixes[n % len(prefixes)]}{line}  \r\n" for n, line in enumerate(lines))
    assert run_import(tmp_path, "some notebook output\r\n" + text + "Done!\r\n") == 0
    run = only_run(tmp_path)
    assert same_lines(run.metrics(), 20, expected(BLOCKS[0]))
    assert run.id.endswith("-notebook")


def test_standard_input_and_a_name(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO(BLOCKS[1]))
    assert main(["import", "-", "--name", "batch16", "--set", "batch_size=16", "--runs", str(tmp_path / "runs")]) == 0
    run = only_run(tmp_path)
    assert run.id.endswith("-batch16") and run.record["name"] == "batch16" and run.info.imported == "stdin"
    assert run.config.training.batch_size == 16 and len(run.metrics()) == 13
    assert "imported from stdin: epochs 8-20 of 20 (13 lines)" in capsys.readouterr().out


def test_a_log_without_validation_and_phonetui_s_own_lines(tmp_path):
    text = "[001/003] Train Acc: 0.500000 Loss: 1.500000  (2.5 s)\n[002/003] Train Acc: 0.600000 Loss: 1.200000  (2.4 s)\n"
    assert run_import(tmp_path, text) == 0
    run = only_run(tmp_path)
    assert run.config.training.val_ratio == 0 and run.status.best_epoch is None and run.status.best_val_acc is None
    assert [(m.val_acc, m.seconds) for m in run.metrics()] == [(None, 2.5), (None, 2.4)]


LINE = "[{:03d}/{:03d}] Train Acc: 0.759404 Loss: 0.741234 | Val Acc: 0.700456 loss: 0.945627\n"


@pytest.mark.parametrize("text, words", [
    ("no epochs here\nsaving model with acc 0.704\n", ["notebook.log: no epoch lines"]),
    (LINE.format(19, 20) + LINE.format(20, 20) + LINE.format(1, 200), ["notebook.log:3:", "two runs in one log"]),
    (LINE.format(19, 20) + LINE.format(20, 20) + "x\n" + LINE.format(1, 20), ["notebook.log:4:", "starts again"]),
    (LINE.format(14, 20) + LINE.format(13, 20), ["notebook.log:2:", "epoch 13 after epoch 14: epochs out of order"]),
    (LINE.format(14, 20) + LINE.format(14, 20), ["notebook.log:2:", "a repeated epoch"]),
    (LINE.format(21, 20), ["notebook.log:1:", "epoch 21 of 20"]),
    (LINE.format(13, 20)[:60] + "\n", ["notebook.log:1:", "cut short"]),
    (LINE.format(13, 20) + "[014/020] Train Acc: 0.5 Loss: 0.7\n", ["notebook.log:2:", "without a Val part"]),
])
def test_bad_logs_are_one_line_and_make_no_run(text, words, tmp_path, capsys):
    assert run_import(tmp_path, text) == 2
    assert_refused(capsys, tmp_path, *words)


def test_the_whole_markdown_file_is_four_runs_and_refused(tmp_path, capsys):
    line = STUDENT.read_text().splitlines().index(BLOCKS[1].splitlines()[0]) + 1
    assert main(["import", str(STUDENT), "--runs", str(tmp_path / "runs")]) == 2
    assert_refused(capsys, tmp_path, f"student-runs.md:{line}: epoch 8 after epoch 20")


@pytest.mark.parametrize("args, words", [
    (["--set", "lr=abc"], ["--set lr=abc: not a number"]),
    (["--set", "batch_size=0"], ["--set batch_size=0", "integer >= 1"]),
    (["--set", "colour=red"], ["--set colour=red: unknown key 'colour'"]),
    (["--set", "lr"], ["--set lr: not key=value"]),
    (["--set", "layers=3"], ["--set layers=3: not a setting of a model of kind mlp"]),
    (["--set", "batchnorm=maybe"], ["--set batchnorm=maybe: must be true or false"]),
    (["--set", "epochs=10"], ["--set epochs=10: the log goes on to epoch 20"]),
    (["--name", "../up"], ["--name '../up'"]),
])
def test_bad_settings_are_one_line_and_make_no_run(args, words, tmp_path, capsys):
    assert run_import(tmp_path, BLOCKS[0], *args) == 2
    assert_refused(capsys, tmp_path, *words)


def test_a_missing_log_is_one_line(tmp_path, capsys):
    assert main(["import", str(tmp_path / "gone.log"), "--runs", str(tmp_path / "runs")]) == 2
    assert_refused(capsys, tmp_path, "gone.log: missing log")


def test_predict_and_resume_refuse_an_imported_run_and_runs_lists_and_diagnoses_it(tmp_path, capsys):
    assert run_import(tmp_path, BLOCKS[0]) == 0
    run = only_run(tmp_path)
    capsys.readouterr()
    for args, words in ((["predict", run.id], "no model to predict with"), (["resume", run.id], "nothing to resume"),
                        (["resume", run.id, "--epochs", "40", "--data", str(tmp_path)], "nothing to resume")):
        assert main([*args, "--runs", str(tmp_path / "runs")]) == 2
        err = capsys.readouterr().err
        assert err == f"phonetui: error: {run.path}: imported from a log: {words}" + err[err.index(words) + len(words):]
        assert err.count("\n") == 1, err
    assert main(["runs", "--runs", str(tmp_path / "runs")]) == 0
    (row,) = [line for line in capsys.readouterr().out.splitlines() if run.id in line]
    assert row.split()[-1] == "imported" and "20/20" in row.split() and "0.7044" in row.split()
    assert main(["runs", "--show", run.id, "--runs", str(tmp_path / "runs")]) == 0  # the diagnosis, not the phones
    out = capsys.readouterr().out
    assert "diagnosis [overfitting] val loss has risen since epoch 16" in out
    assert "no per-phone diagnostics: an imported run has no model" in out


def test_the_core_refuses_too(tmp_path):
    from phonetui import predict, trainer
    from phonetui.errors import PhonetuiError

    assert run_import(tmp_path, BLOCKS[0]) == 0
    run = only_run(tmp_path)
    for call, words in ((lambda: predict.predict(run, None), "no model to predict with"),
                        (lambda: predict.predict_ensemble([run], None, tmp_path / "e.csv"), "no model to predict with"),
                        (lambda: trainer.resume(run, None, epochs=40), "nothing to resume")):
        with pytest.raises(PhonetuiError, match=words):
            call()


def test_the_core_module_is_headless_and_light():
    """No Textual (it is core: the CLI is its client) and no torch (importing a log trains nothing)."""
    import subprocess
    import sys

    code = "import sys, phonetui.importing; print(sorted(m for m in ('textual', 'torch', 'numpy') if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
