"""Optuna studies: the search space, SQLite storage in the runs folder, pruning, trials as runs."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from phonetui import runs, search, storage
from phonetui.errors import PhonetuiError
from tests.conftest import until_runs_train

optuna = pytest.importorskip("optuna")


def test_space_ranges_choices_and_fixed_values_are_checked() -> None:
    space, fixed = search.parse_space({"lr": "1e-4:1e-2", "batch_size": "64,128", "epochs": "3"})
    assert [str(d) for d in space] == ["0.0001:0.01", "64,128"] and fixed == {"epochs": 3}
    with pytest.raises(PhonetuiError, match=r"--lr 1e-2:1e-4: a range needs numbers LO:HI with LO < HI"):
        search.parse_space({"lr": "1e-2:1e-4"})
    with pytest.raises(PhonetuiError, match=r"--batch-size 0: must be an integer >= 1"):
        search.parse_space({"batch_size": "0,64"})
    with pytest.raises(PhonetuiError, match="give at least one flag a range"):
        search.parse_space({"epochs": "3"})


def test_a_study_on_sqlite_prunes_and_continues(tiny, demo, tmp_path) -> None:
    runs_dir = tmp_path / "runs"
    space, _ = search.parse_space({"lr": "1e-5:3e-2"})
    study = search.open_study(runs_dir, "tiny")
    for lr in (3e-3, 5e-3, 1e-2, 1e-5):  # three good trials for the median, then one far below it
        study.enqueue_trial({"lr": lr})
    assert search.optimize(study, tiny.with_training(epochs=4), space, demo, runs_dir, trials=6)
    assert (runs_dir / storage.DB).is_file()
    again = search.open_study(runs_dir, "tiny")  # what another process (or machine) sees
    states = [t.state.name for t in again.trials]
    assert len(states) == 6 and set(states) <= {"COMPLETE", "PRUNED"}
    assert states[3] == "PRUNED" and states[:3] == ["COMPLETE"] * 3  # the pruner ran, and stopped the bad one
    board = search.leaderboard(again)
    for row in board:
        run = runs.open_run(runs_dir / row["run"])
        assert run.config.training.lr == pytest.approx(row["params"]["lr"])
        if row["state"] == "pruned":
            assert run.status.message.startswith("pruned by Optuna")
    done = [r["value"] for r in board if r["state"] == "complete"]
    assert done == sorted(done, reverse=True)


def test_a_search_whose_space_differs_from_the_studys_is_one_line(tiny, demo, tmp_path, capsys) -> None:
    runs_dir = tmp_path / "runs"
    study = search.open_study(runs_dir, "tiny")
    assert search.optimize(study, tiny.with_training(epochs=1), search.parse_space({"lr": "1e-3:1e-2"})[0], demo,
                           runs_dir, trials=1)
    choices, _ = search.parse_space({"lr": "1e-3,1e-2"})  # the same name, now a choice: Optuna refuses
    with pytest.raises(PhonetuiError, match="optuna study 'tiny': .*distribution") as e:
        search.optimize(search.open_study(runs_dir, "tiny"), tiny.with_training(epochs=1), choices, demo, runs_dir, 1)
    assert "\n" not in str(e.value)


@pytest.mark.slow
def test_a_trial_stopped_by_ctrl_c_is_phonetuis_line_not_an_optuna_traceback(demo_dir, presets_dir, tmp_path) -> None:
    cmd = [sys.executable, "-m", "phonetui", "search", "--data", str(demo_dir), "--presets", str(presets_dir),
           "--preset", "tiny", "--lr", "1e-3:1e-2", "--epochs", "200", "--trials", "2", "--runs", str(tmp_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    until_runs_train(tmp_path, timeout=60)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err and "failed because of" not in err, err
    (trial,) = search.open_study(tmp_path, "tiny epochs=200").trials
    assert trial.state.name == "FAIL"


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_trial_whose_process_died_is_marked_failed_when_the_study_is_next_opened(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(storage, "HEARTBEAT_S", 1)
    monkeypatch.setattr(storage, "GRACE_S", 1)
    runs_dir = tmp_path / "runs"
    study = search.open_study(runs_dir, "tiny")
    trial = study.ask()  # as a worker does, then killed before it tells the result
    study._storage.record_heartbeat(trial._trial_id)
    time.sleep(2.5)
    assert [t.state.name for t in search.open_study(runs_dir, "tiny").trials] == ["FAIL"]


def test_a_damaged_study_database_is_one_line(tiny, demo, tmp_path) -> None:
    runs_dir = tmp_path / "runs"
    study = search.open_study(runs_dir, "tiny")
    search.optimize(study, tiny.with_training(epochs=1), search.parse_space({"lr": "1e-3:1e-2"})[0], demo, runs_dir, 1)
    with sqlite3.connect(runs_dir / storage.DB) as db:
        db.execute("UPDATE trial_params SET distribution_json = '{'")
    with pytest.raises(PhonetuiError, match="optuna study 'tiny': cannot read its trials"):
        search.leaderboard(search.open_study(runs_dir, "tiny"))


def test_a_storage_password_is_never_printed(tmp_path) -> None:
    assert storage.shown("postgresql://ann:s3cr%40t@db.lab:5432/phon") == "postgresql://ann:***@db.lab:5432/phon"
    assert storage.shown("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    with pytest.raises(PhonetuiError) as e:
        search.open_study(tmp_path, "tiny", "postgresql+nodriver://ann:s3cret@127.0.0.1:1/phon")
    assert "s3cret" not in str(e.value) and "ann:***@127.0.0.1" in str(e.value)


@pytest.mark.slow
def test_jobs_split_the_trials_and_ctrl_c_stops_every_worker(demo_dir, presets_dir, tmp_path) -> None:
    assert search.shares(5, 2) == [3, 2] and search.shares(2, 4) == [1, 1]
    cmd = [sys.executable, "-m", "phonetui", "search", "--data", str(demo_dir), "--presets", str(presets_dir),
           "--preset", "tiny", "--lr", "1e-3:1e-2", "--epochs", "500", "--trials", "4", "--jobs", "2",
           "--runs", str(tmp_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    until_runs_train(tmp_path, 2, 120)
    proc.send_signal(signal.SIGINT)  # to phonetui alone: it passes the stop on to its workers
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err + out, err
    trials = search.open_study(tmp_path, "tiny epochs=500", create=False).trials
    assert [t.state.name for t in trials] == ["FAIL", "FAIL"]  # two in flight at once, none left running
    assert {runs.open_run(tmp_path / t.user_attrs["run"]).state for t in trials} == {"stopped"}
    assert "[job 1] stopped" in out and "[job 2] stopped" in out


def test_a_study_is_named_for_its_fixed_settings_and_numbers_trials_as_its_leaderboard(demo_dir, presets_dir,
                                                                                       tmp_path, capsys) -> None:
    from phonetui.cli import main

    base = ["search", "--data", str(demo_dir), "--presets", str(presets_dir), "--preset", "tiny", "--lr", "1e-3:1e-2",
            "--runs", str(tmp_path)]
    assert main([*base, "--epochs", "1", "--trials", "2", "--predict"]) == 0
    out = capsys.readouterr().out
    assert "study tiny epochs=1 " in out and "trial 0 (1 of 2)" in out and "trial 1 (2 of 2)" in out
    trials = search.open_study(tmp_path, "tiny epochs=1", create=False).trials
    assert [t.number for t in trials] == [0, 1]
    assert all((tmp_path / t.user_attrs["run"] / runs.PREDICTION).is_file() for t in trials)  # --predict
    assert main(["search", "--study", "tiny epochs=1", "--runs", str(tmp_path), "--list"]) == 0
    board = capsys.readouterr().out.splitlines()
    assert "vs best: val acc, 95%" in board[1] and " best " in board[2]  # the leader, then the other against it
    assert " beyond noise " in board[3] or " within noise " in board[3]
    assert main([*base, "--epochs", "2", "--trials", "1"]) == 0  # another objective: a study of its own
    assert "trial 0 (1 of 1)" in capsys.readouterr().out
    assert len(search.open_study(tmp_path, "tiny epochs=1", create=False).trials) == 2


@pytest.mark.slow
def test_a_killed_worker_is_named_its_trial_failed_at_once_and_its_other_trials_still_run(demo_dir, presets_dir,
                                                                                          tmp_path) -> None:
    cmd = [sys.executable, "-m", "phonetui", "search", "--data", str(demo_dir), "--presets", str(presets_dir),
           "--preset", "tiny", "--lr", "1e-3:1e-2", "--epochs", "15", "--trials", "4", "--jobs", "2",
           "--runs", str(tmp_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    until_runs_train(tmp_path, 2, 120)
    workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(workers) == 2
    os.kill(int(workers[0]), signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1 and "Traceback" not in out + err, err
    killed = re.search(r"\[job (\d)\] ended \(killed by SIGKILL\): its trial (\d+) is marked failed", out)
    assert killed, out
    job, number = killed.groups()
    assert f"phonetui: job {job} ended (killed by SIGKILL): its trial {number} is marked failed" in err
    trials = search.open_study(tmp_path, "tiny epochs=15", create=False).trials
    states = {t.number: t.state.name for t in trials}
    assert states[int(number)] == "FAIL" and "RUNNING" not in states.values()
    assert len(trials) == 4 and sum(s == "FAIL" for s in states.values()) == 1  # the other three ran


def test_a_read_only_or_full_database_is_one_line_at_once_not_a_lost_connection(tmp_path) -> None:
    from sqlalchemy import exc

    def error(text: str) -> exc.OperationalError:
        return exc.OperationalError("INSERT ...", {}, sqlite3.OperationalError(text))

    assert not storage.transient(error("attempt to write a readonly database"))
    assert not storage.transient(error("database or disk is full"))
    assert storage.transient(error("database is locked"))  # another writer: worth the wait
    db = tmp_path / "optuna.db"
    search.open_study(tmp_path, "made")  # the file exists; opened read-only below (root ignores a chmod)
    start = time.monotonic()
    with pytest.raises(PhonetuiError, match="readonly database") as e:
        search.open_study(tmp_path, "another", f"sqlite:///file:{db}?mode=ro&uri=true")
    assert time.monotonic() - start < 20 and "retrying" not in str(e.value)


@pytest.mark.slow
def test_an_in_memory_study_is_refused_in_one_line(demo_dir, presets_dir, tmp_path) -> None:
    r = subprocess.run([sys.executable, "-m", "phonetui", "search", "--data", str(demo_dir), "--presets",
                        str(presets_dir), "--preset", "tiny", "--lr", "1e-3:1e-2", "--trials", "1", "--epochs", "1",
                        "--runs", str(tmp_path), "--storage", "sqlite://"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr == ("phonetui: error: optuna storage sqlite://: an in-memory database would "
                                              "vanish with this process (and its heartbeat thread cannot see it): name a "
                                              "file, sqlite:///PATH/optuna.db, or a server\n"), r.stderr


@pytest.mark.slow
def test_searches_opening_one_new_sqlite_study_at_one_instant_both_open_it(tmp_path) -> None:
    """The loser of the table-creation race retries (SQLite says UNIQUE constraint failed on
    alembic's version row, 1 time in 5 before)."""
    from sqlalchemy import exc

    assert storage._lost_race(exc.IntegrityError("INSERT", {}, sqlite3.IntegrityError(
        "UNIQUE constraint failed: alembic_version.version_num")))
    code = ("import sys, time; from phonetui import search; t = float(sys.argv[2]); time.sleep(max(0, t - time.time()));"
            "search.open_study(__import__('pathlib').Path(sys.argv[1]), 's'); print('ok')")
    for round_ in range(3):
        folder = tmp_path / str(round_)
        at = str(time.time() + 2.5)  # after all three have imported optuna
        procs = [subprocess.Popen([sys.executable, "-c", code, str(folder), at], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(3)]
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0 and out == "ok\n", err


def test_without_optuna_a_search_is_one_line_with_the_pip_command(demo_dir, presets_dir, tmp_path) -> None:
    """README command 1 installs only the speech extra: Optuna hidden here as if it were not installed."""
    code = ("import sys; sys.modules['optuna'] = None; from phonetui.cli import main; sys.exit(main(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", code, "search", "--data", str(demo_dir), "--presets", str(presets_dir),
                        "--preset", "tiny", "--lr", "1e-3:1e-2", "--trials", "1", "--runs", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr == ("phonetui: error: an Optuna search needs the search extra: "
                                              "pip install 'phonetui[search]'\n"), r.stderr
