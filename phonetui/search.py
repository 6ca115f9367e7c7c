"""Optuna studies over a preset: every trial an ordinary run, poor trials pruned from their
per-epoch val accuracy. Storage is SQLite in the runs folder unless an Optuna storage URL is
given (a database server lets several machines work on one study, see storage); `run_jobs`
runs trials in parallel, each worker its own process with its share of the CPU threads
(phonetui.workers), and stands in for a worker that dies.

A search space maps training values to "LO:HI" (a range: log-uniform for lr, uniform otherwise,
integers for integer values) or "A,B,..." (a choice); any other text fixes the value.

Every storage failure (a study whose earlier trials searched a value differently, a read-only or
full disk, a damaged database) is one PhonetuiError line naming the study. Running trials beat a
heartbeat; a trial whose process died (kill -9, a lost machine) is marked failed when the study is
next opened, once its heartbeat is older than the grace period.
"""

from __future__ import annotations

import itertools
import os
import socket
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import space, workers
from .config import EDITABLE, RunConfig
from .errors import PhonetuiError, first_line
from .events import EitherStop, EpochEnd, RunStarted, stop_flag
from .storage import connect, describe, import_optuna, shown, url_for


@dataclass(frozen=True)
class Dimension:
    key: str
    low: Any = None
    high: Any = None
    choices: tuple = ()

    def suggest(self, trial) -> Any:
        if self.choices:
            return trial.suggest_categorical(self.key, list(self.choices))
        if isinstance(self.low, int):
            return trial.suggest_int(self.key, self.low, self.high)
        return trial.suggest_float(self.key, self.low, self.high, log=self.key == "lr")

    def __str__(self) -> str:
        return ",".join(map(str, self.choices)) if self.choices else f"{self.low}:{self.high}"


def parse_space(texts: dict[str, str]) -> tuple[list[Dimension], dict[str, Any]]:
    """(dimensions to search, fixed values) from each flag's text, every value checked by its rule."""
    dims, fixed = [], {}
    for key, text in texts.items():
        if key not in EDITABLE:
            raise PhonetuiError(f"search: '{key}' is not a training value (those are: {', '.join(EDITABLE)})")
        field = space.parse(key, text)
        if field.shape == space.Shape.RANGE:
            dims.append(Dimension(key, *field.values))
        elif field.shape == space.Shape.LIST:
            dims.append(Dimension(key, choices=field.values))
        else:
            fixed[key] = field.value
    if not dims:
        raise PhonetuiError("search: give at least one flag a range LO:HI or a list A,B (e.g. --lr 1e-4:1e-2)")
    return dims, fixed


def study_name(preset: str, fixed: dict[str, Any]) -> str:
    """A study's default name: the preset and every training value fixed for it (trials of other
    fixed values, another epoch count say, are another objective and get a study of their own)."""
    return " ".join([preset, *(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(fixed.items()))])


def study_names(runs_dir: Path, storage: str | None = None) -> list[str]:
    """The studies in the storage (none where the runs folder has no SQLite file and no URL is set)."""
    url = url_for(runs_dir, storage)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return []
    return sorted(s.study_name for s in connect(url).get_all_studies())


def open_study(runs_dir: Path, name: str, storage: str | None = None, notify: Callable[[str], None] = lambda line: None,
               create: bool = True):
    """The study called `name` (created if new, unless `create` is False), maximising best val
    accuracy, median pruning; its stale trials (see the module's note) marked failed. `notify`
    hears when the connection is lost and back (see storage)."""
    optuna = import_optuna()
    runs_dir.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a stopped trial is phonetui's to report, in one line
    url = url_for(runs_dir, storage)
    rdb = connect(url, notify)
    try:
        if not create and name not in (names := [s.study_name for s in rdb.get_all_studies()]):
            raise PhonetuiError(f"optuna storage {shown(url)}: no study '{name}' (it holds: {', '.join(names) or 'none'})")
        study = optuna.create_study(study_name=name, storage=rdb, direction="maximize", load_if_exists=True,
                                    pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1))
        with warnings.catch_warnings():  # "experimental" since Optuna 2.9, and works
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        return study
    except PhonetuiError:
        raise
    except Exception as e:  # noqa: BLE001 - the server refused a request
        raise PhonetuiError(describe(url, e)) from None


class _Stopped(Exception):
    """The user stopped the study (the trial in progress is recorded as failed)."""


def optimize(study, base: RunConfig, space: list[Dimension], data, runs_dir: Path, trials: int,
             listen: Callable = lambda e: None, cancel: threading.Event | None = None,
             announce: Callable = lambda number, i, n, values: None,
             finished: Callable = lambda run: None) -> bool:
    """Run `trials` more trials of the study; False when the user stopped it. `announce` hears
    each trial's number in the study (Optuna's, from 0, as the leaderboard shows it), its place
    among these `trials` and its values; `finished` gets the run of each trial that completes."""
    import optuna

    from . import trainer

    cancel = stop_flag(cancel)
    count = itertools.count(1)

    def objective(trial) -> float:
        values = {d.key: d.suggest(trial) for d in space}
        trial.set_user_attr("host", socket.gethostname())  # where it ran: any machine's leaderboard shows it
        trial.set_user_attr("runs", str(runs_dir.resolve()))
        trial.set_user_attr("pid", os.getpid())  # which worker process: a parent marks its trial failed if it dies
        announce(trial.number, next(count), trials, values)
        pruned = threading.Event()

        def on(e) -> None:
            if isinstance(e, RunStarted):
                trial.set_user_attr("run", e.run.id)
            elif isinstance(e, EpochEnd) and e.metrics.val_acc is not None:
                trial.report(e.metrics.val_acc, e.metrics.epoch)
                if e.metrics.epoch < e.epochs and trial.should_prune():  # after the last epoch it has run anyway
                    pruned.set()
            listen(e)

        run = trainer.train(base.with_training(**values), data, runs_dir, on, EitherStop(cancel, pruned))
        if pruned.is_set() and not cancel.is_set():
            raise optuna.TrialPruned()
        if run.state != "finished":
            raise _Stopped(run.status.message or "stopped")
        finished(run)
        best = run.status.best_val_acc
        return best if best is not None else float("nan")

    try:
        study.optimize(objective, n_trials=trials, catch=())
    except _Stopped:
        return False
    except (PhonetuiError, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - the storage or Optuna refused: one line
        rdb = getattr(study._storage, "_backend", study._storage)  # Optuna wraps an RDBStorage in its cache
        if lost := getattr(rdb, "lost", None):  # Optuna's own error then names neither the server nor the loss
            raise PhonetuiError(lost) from None
        raise PhonetuiError(f"optuna study '{study.study_name}': {first_line(e, 200)}") from None
    return True


def leaderboard(study) -> list[dict[str, Any]]:
    """Every trial of the study, from every worker: number, state, params, value and origin (host,
    runs folder, run id); completed ones best first."""
    try:
        rows = [{"trial": t.number, "state": t.state.name.lower(), "params": t.params, "value": t.value,
                 "host": t.user_attrs.get("host"), "runs": t.user_attrs.get("runs"), "run": t.user_attrs.get("run")}
                for t in study.trials]
    except Exception as e:  # noqa: BLE001 - a damaged database
        raise PhonetuiError(f"optuna study '{study.study_name}': cannot read its trials ({first_line(e, 200)})") from None
    return sorted(rows, key=lambda r: (r["value"] is None, -(r["value"] or 0)))


def board_rows(board: list[dict[str, Any]]) -> tuple[list[str], list[tuple[list[str], Path | None]]]:
    """A leaderboard as a table: the param names, and each trial's cells (rank, trial, state, the
    params, best val acc, host) with the folder of its run (None before it has one)."""
    keys = list(dict.fromkeys(k for row in board for k in row["params"]))
    rows = []
    for rank, row in enumerate(board, 1):
        params = [f"{v:.3g}" if isinstance(v := row["params"].get(k), float) else str("-" if v is None else v)
                  for k in keys]
        cells = [str(rank), str(row["trial"]), row["state"], *params,
                 "-" if row["value"] is None else f"{row['value']:.4f}", row["host"] or "-"]
        rows.append((cells, Path(row["runs"] or ".") / row["run"] if row["run"] else None))
    return keys, rows


def shares(trials: int, jobs: int) -> list[int]:
    """How many of `trials` each of `jobs` workers runs (no worker without a trial)."""
    jobs = min(jobs, trials)
    return [trials // jobs + (i < trials % jobs) for i in range(jobs)]


def worker_command(preset: str, study: str, texts: dict[str, str], trials: int, job: str, data_dir: Path,
                   runs_dir: Path, presets_dirs: list[Path] | None = None, predict: bool = False,
                   tensorboard: bool = False) -> list[str]:
    """The command line of one `search --jobs N` worker: the preset, and the training flags' text
    (ranges and lists included) as typed; its storage URL comes in the environment (storage.ENV)."""
    cmd = [sys.executable, "-m", "phonetui", "search", "--preset", preset, "--study", study, "--trials", str(trials),
           "--job", job, "--data", str(data_dir), "--runs", str(runs_dir)]
    for folder in presets_dirs or []:
        cmd += ["--presets", str(folder)]
    for key, text in texts.items():
        cmd += ["--" + key.replace("_", "-"), text]
    return cmd + ["--predict"] * predict + ["--tensorboard"] * tensorboard


def run_jobs(study, preset: str, texts: dict[str, str], trials: int, jobs: int, data_dir: Path, runs_dir: Path,
             say: Callable[[str, str], None], stop: threading.Event, presets_dirs: list[Path] | None = None,
             predict: bool = False, env: dict[str, str] | None = None, tensorboard: bool = False) -> list[str]:
    """Run `trials` of the study in `jobs` worker processes (`phonetui search --job K/N` with the
    preset and the flags' `texts`), all at once, each with its share of the trials and of the CPU
    threads (phonetui.workers); `say(job, line)` hears each worker's lines. A worker that dies
    (killed, or failing) is said in one line naming the job and the trial it had, that trial is
    marked failed at once (not left `running` until its heartbeat goes stale), and the trials it
    had left run in one worker started in its place. Returns what went wrong, a line each (empty:
    every worker ended well)."""
    from optuna.trial import TrialState

    host, problems = socket.gethostname(), []
    parts = shares(trials, jobs)
    todo = [(str(i), n) for i, n in enumerate(parts, 1)]  # (job, trials it is to run)
    for round_ in (1, 2):
        pids: dict[int, int] = {}
        dead: list[tuple[int, int]] = []

        def ended(job: int, code: int) -> None:
            if code in (0, 130) or stop.is_set():
                return
            label, mine = todo[job - 1][0], _trials_of(study, pids[job], host)
            had = [t.number for t in mine if t.state == TrialState.RUNNING]
            for t in mine:
                if t.state == TrialState.RUNNING:
                    study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            line = f"ended ({workers.how_it_ended(code)})" + (
                f": its trial {', '.join(map(str, had))} is marked failed" if had else " with no trial in progress")
            say(label, line)
            problems.append(f"job {label} {line}")
            dead.append((job, len(mine)))

        commands = [worker_command(preset, study.study_name, texts, n, f"{label}/{len(parts)}", data_dir, runs_dir,
                                   presets_dirs, predict, tensorboard) for label, n in todo]
        workers.run(commands, len(commands), lambda job, line: say(todo[job - 1][0], line), stop, env,
                    started=lambda job, pid: pids.__setitem__(job, pid), ended=ended)
        left = [(todo[job - 1][0], todo[job - 1][1] - started) for job, started in dead if todo[job - 1][1] > started]
        if stop.is_set() or not left:
            break
        if round_ == 2:
            problems += [f"job {label}: {n} trial{'s' * (n != 1)} did not run" for label, n in left]
            break
        for label, n in left:
            say(label, f"{n} trial{'s' * (n != 1)} left: a new worker runs {'them' if n > 1 else 'it'}")
        todo = left
    return problems


def _trials_of(study, pid: int, host: str) -> list:
    """The study's trials that the worker process `pid` on `host` started (each records both)."""
    return [t for t in study.get_trials(deepcopy=False)
            if t.user_attrs.get("pid") == pid and t.user_attrs.get("host") == host]
