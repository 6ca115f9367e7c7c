"""One Optuna study shared by many `phonetui search` processes on a real PostgreSQL server, which the
suite starts itself (a throwaway data folder, a free loopback port, trust auth) from the binaries
`pg_config --bindir` names; skipped, with the reason, where there are none (.ci/run installs them)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from phonetui import runs, search
from tests.conftest import until_runs_train

pytestmark = pytest.mark.slow  # real servers, processes and a browser
pytest.importorskip("optuna")
psycopg = pytest.importorskip("psycopg")


def _bindir() -> Path | None:
    try:
        named = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip()
    except FileNotFoundError:
        named = ""
    for folder in [named, *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]:
        if folder and (Path(folder) / "initdb").is_file():
            return Path(folder)
    return None


class Server:
    """A PostgreSQL server of our own; as root, it runs as the `postgres` user (initdb refuses root)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.user = None
        if os.geteuid() == 0:
            self.user = next(u for u in ("postgres", "nobody") if _exists(u))
        self.home = Path(tempfile.mkdtemp(prefix="phonetui-pg-"))
        if self.user:
            shutil.chown(self.home, self.user)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._pg("initdb", "-D", self.home / "data", "-A", "trust", "-U", "phonetui")
        hba = self.home / "data" / "pg_hba.conf"  # trust, but for the role that tests a refused password
        hba.write_text("host all ann 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        self.start()
        self.sql("CREATE ROLE ann LOGIN PASSWORD 'right'")

    def _pg(self, tool: str, *args) -> None:
        subprocess.run([self.bindir / tool, *map(str, args)], check=True, capture_output=True, user=self.user,
                       cwd=self.home)

    def start(self) -> None:
        self._pg("pg_ctl", "-D", self.home / "data", "-l", self.home / "log", "-w", "start", "-o",
                 f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''")

    def stop(self, mode: str = "fast") -> None:
        self._pg("pg_ctl", "-D", self.home / "data", "-m", mode, "-w", "stop")

    def sql(self, statement: str) -> None:
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=phonetui dbname=postgres", autocommit=True) as c:
            c.execute(statement)

    def database(self, name: str) -> str:
        """A new, empty database: its URL."""
        self.sql(f'CREATE DATABASE "{name}"')
        return f"postgresql://phonetui@127.0.0.1:{self.port}/{name}"


def _exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
        return True
    except KeyError:
        return False


@pytest.fixture(scope="module")
def server():
    bindir = _bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) here: apt-get install postgresql")
    s = Server(bindir)
    yield s
    try:
        s.stop("immediate")
    finally:
        shutil.rmtree(s.home, ignore_errors=True)


def _search(demo_dir, presets_dir, runs_dir, url, *extra) -> list[str]:
    return [sys.executable, "-m", "phonetui", "search", "--data", str(demo_dir), "--presets", str(presets_dir),
            "--preset", "tiny", "--lr", "1e-3:1e-2", "--runs", str(runs_dir), "--storage", url, "--study", "s", *extra]


def _check_study(url: str, trials: int, tmp_path: Path) -> list:
    study = search.open_study(tmp_path, "s", url, create=False)
    done = study.trials
    assert len(done) == trials and sorted(t.number for t in done) == list(range(trials))
    for t in done:
        assert t.state.name in ("COMPLETE", "PRUNED"), t
        run = runs.open_run(Path(t.user_attrs["runs"]) / t.user_attrs["run"])
        assert run.config.training.lr == pytest.approx(t.params["lr"]) and t.user_attrs["host"] == socket.gethostname()
    return done


@pytest.mark.parametrize("workers", [2, 3])
def test_workers_started_at_one_instant_on_a_new_study_share_it(server, demo_dir, presets_dir, tmp_path, workers) -> None:
    url = server.database(f"race{workers}")
    procs = [subprocess.Popen(_search(demo_dir, presets_dir, tmp_path / f"r{i}", url, "--trials", "2", "--epochs", "2"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(workers)]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0 and "Traceback" not in err, err
    _check_study(url, 2 * workers, tmp_path)


def test_workers_keep_going_through_a_server_restart(server, demo_dir, presets_dir, tmp_path) -> None:
    url = server.database("outage")
    proc = subprocess.Popen(_search(demo_dir, presets_dir, tmp_path / "r", url, "--trials", "2", "--jobs", "2",
                                    "--epochs", "120"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    until_runs_train(tmp_path / "r", 2, 120)
    server.stop()
    time.sleep(4)
    server.start()
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "Traceback" not in out, out
    assert "lost the connection" in out and "connected again" in out, out  # said while it lasted, by each worker
    _check_study(url, 2, tmp_path)  # nothing left RUNNING
    listed = subprocess.run([sys.executable, "-m", "phonetui", "search", "--storage", url, "--study", "s", "--list"],
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and listed.stdout.count(socket.gethostname()) == 2, listed
    assert "running" not in listed.stdout


def test_jobs_run_their_trials_at_once(server, demo_dir, presets_dir, tmp_path) -> None:
    url = server.database("jobs")
    done = subprocess.run(_search(demo_dir, presets_dir, tmp_path / "r", url, "--trials", "2", "--jobs", "2",
                                  "--epochs", "30"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    a, b = _check_study(url, 2, tmp_path)
    assert a.datetime_start < b.datetime_complete and b.datetime_start < a.datetime_complete  # in flight together
    assert "[job 1]" in done.stdout and "[job 2]" in done.stdout


def test_a_wrong_url_or_a_refused_login_is_one_line_naming_the_server(server, demo_dir, presets_dir, tmp_path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    here = f"127.0.0.1:{server.port}"
    for url, said in ((f"postgresql://ann:s3cret@127.0.0.1:{closed}/x", f"cannot connect to 127.0.0.1:{closed}: "
                       "Connection refused"),
                      (f"postgresql://ann:s3cret@{here}/postgres", f"cannot connect to {here}: "
                       'password authentication failed for user "ann"'),
                      (f"postgresql://bob:s3cret@{here}/postgres", f'cannot connect to {here}: role "bob" does not exist')):
        done = subprocess.run(_search(demo_dir, presets_dir, tmp_path, url, "--trials", "1"),
                              capture_output=True, text=True, timeout=60)
        masked = url.replace(":s3cret@", ":***@")
        assert done.returncode == 2 and done.stderr == f"phonetui: error: optuna storage {masked}: {said}\n", done.stderr


def test_a_server_gone_for_good_ends_the_search_in_one_line_after_the_wait(server, demo_dir, presets_dir,
                                                                            tmp_path) -> None:
    """Issue 28: 374 s for a promised 120, a heartbeat thread's traceback and Optuna's `updated_state`.
    The wait is one clock for every call of the process (PHONETUI_RETRY_S shortens it here)."""
    url = server.database("gone")
    env = {**os.environ, "PHONETUI_RETRY_S": "8"}
    proc = subprocess.Popen(_search(demo_dir, presets_dir, tmp_path / "r", url, "--trials", "3", "--epochs", "200"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        until_runs_train(tmp_path / "r", timeout=120)
        server.stop("immediate")
        gone = time.monotonic()
        out, err = proc.communicate(timeout=120)
        took = time.monotonic() - gone
    finally:
        server.start()
    assert proc.returncode != 0 and "Traceback" not in out + err and "updated_state" not in err, err
    assert took < 8 + 30, took  # the wait, one epoch's check of the cancel flag, and the shutdown
    assert f"lost the database at 127.0.0.1:{server.port} for over 8 s" in err, err
    assert err.count("\n") <= 3, err  # lost, and the end: no flood of lines
