"""Sweeps: a preset crossed with lists of training values, every trial an ordinary run.

A sweep is a queue kept in `<runs>/.sweeps/<id>.json` (its resolved base config, the grid, each
trial's values and, once started, its run id), so it survives the process that ran it: `phonetui
sweep --continue ID` and the app pick up what is left, with the settings the sweep started with.
The file's name is the sweep's id; a file that does not read back as a sweep is refused naming the
field. The process running a sweep holds `<id>.lock`, so a second one is refused. With `--jobs N`
that process trains nothing itself: it runs each pending trial as a worker process of its own
(`phonetui sweep --continue ID --trial K`), N at once (phonetui.workers), and each worker records its
trial's run in the file under `<id>.save.lock`. Optuna studies (phonetui.search) build on the same pieces.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import space, workers
from .events import RunStarted
from .config import EDITABLE, TRAIN_RULES, RunConfig, check_value, from_dict
from .errors import PhonetuiError
from .fileio import FILE_MODE, failed, read_text
from .runs import write_text

SWEEPS = ".sweeps"


def parse_grid(texts: dict[str, str]) -> dict[str, list[Any]]:
    """{key: "v1,v2,..."} -> {key: [parsed values]}, each value checked by the key's own rule (phonetui.space)."""
    grid = {}
    for key, text in texts.items():
        if key not in EDITABLE:
            raise PhonetuiError(f"sweep: '{key}' is not a training value a sweep can vary (those are: {', '.join(EDITABLE)})")
        field = space.parse(key, text)
        if field.shape == space.Shape.RANGE:
            raise PhonetuiError(f"--{key.replace('_', '-')} {text}: a range is a search's (phonetui search); a sweep "
                                "takes a list A,B")
        grid[key] = list(field.values)
    return grid


def expand(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, the first key varying slowest."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


@dataclass
class Trial:
    values: dict[str, Any]
    run: str | None = None  # the run folder's name once started


@dataclass
class Sweep:
    """A queue of trials over one preset; saved after every change."""

    id: str
    preset: str
    grid: dict[str, list[Any]]
    trials: list[Trial]
    runs_dir: Path = field(repr=False)
    created: str = ""
    base: RunConfig | None = None  # the resolved config every trial starts from (None: a sweep saved before it was kept)

    @property
    def path(self) -> Path:
        return self.runs_dir / SWEEPS / f"{self.id}.json"

    def config(self, trial: Trial) -> RunConfig:
        if self.base is None:
            raise PhonetuiError(f"{self.path}: no base config (a sweep from an older phonetui): give it one first")
        return self.base.with_training(**trial.values)

    def pending(self) -> list[Trial]:
        """Trials not started yet, or whose run did not finish (they run again)."""
        from .runs import open_run

        left = []
        for t in self.trials:
            try:
                done = t.run is not None and open_run(self.runs_dir / t.run).state == "finished"
            except PhonetuiError:
                done = False
            if not done:
                left.append(t)
        return left

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        d = {"id": self.id, "preset": self.preset, "created": self.created, "grid": self.grid,
             "base": self.base.to_dict() if self.base else None, "trials": [asdict(t) for t in self.trials]}
        write_text(self.path, json.dumps(d, indent=1) + "\n")


def create(runs_dir: Path, base: RunConfig, grid: dict[str, list[Any]]) -> Sweep:
    """A new sweep of `base` over `grid`, saved before any trial runs."""
    stamp, preset = time.strftime("%Y%m%d-%H%M%S"), base.preset
    sweep = Sweep(f"{stamp}-{preset}", preset, grid, [Trial(v) for v in expand(grid)], runs_dir,
                  time.strftime("%Y-%m-%d %H:%M:%S"), base)
    n = 1
    while sweep.path.exists():
        n += 1
        sweep.id = f"{stamp}-{preset}-{n}"
    sweep.save()
    return sweep


_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}\Z")  # a run folder's name, never a path


def _parse(d: Any, path: Path, runs_dir: Path) -> Sweep:
    """A Sweep from a queue file's JSON, every field checked; a PhonetuiError names the first bad one."""
    def bad(what: str) -> PhonetuiError:
        return PhonetuiError(f"{path}: damaged sweep record ({what})")

    if not isinstance(d, dict):
        raise bad("not a JSON object")
    if not isinstance(d.get("preset"), str):
        raise bad("'preset' must be a string")
    grid = d.get("grid")
    if not isinstance(grid, dict) or not grid:
        raise bad("'grid' must be a table of lists")
    for key, values in grid.items():
        if key not in EDITABLE or not isinstance(values, list) or not values:
            raise bad(f"grid '{key}' must be a training value with a list of values")
    trials = d.get("trials")
    if not isinstance(trials, list) or not trials:
        raise bad("'trials' must be a list")
    parsed = []
    for i, t in enumerate(trials, 1):
        if not isinstance(t, dict) or not isinstance(t.get("values"), dict):
            raise bad(f"trial {i}: 'values' must be a table")
        for key, value in t["values"].items():
            if key not in grid or check_value(TRAIN_RULES, key, value)[1]:
                raise bad(f"trial {i}: {key} = {json.dumps(value)[:40]} is not a value of the grid's kind")
        run = t.get("run")
        if run is not None and not (isinstance(run, str) and _RUN_NAME.match(run)):
            raise bad(f"trial {i}: 'run' must be a run folder's name")
        parsed.append(Trial(dict(t["values"]), run))
    base = d.get("base")
    if base is not None:
        if not isinstance(base, dict):
            raise bad("'base' must be a table")
        base = from_dict(base, f"{path}: base")
    created = d.get("created", "")
    return Sweep(path.stem, d["preset"], grid, parsed, runs_dir, created if isinstance(created, str) else "", base)


def load(runs_dir: Path, sweep_id: str) -> Sweep:
    """The sweep saved as `<runs>/.sweeps/<sweep_id>.json` (its id is the file's name)."""
    path = runs_dir / SWEEPS / f"{sweep_id}.json"
    if not path.exists():
        raise PhonetuiError(f"{path}: no such sweep")
    try:
        return _parse(json.loads(read_text(path)), path, runs_dir)
    except json.JSONDecodeError as e:
        raise PhonetuiError(f"{path}: damaged sweep record (not valid JSON: {e})") from None


@contextmanager
def hold(sweep: Sweep) -> Iterator[None]:
    """Be the one process running this sweep (an flock on `<id>.lock`); a second is refused."""
    path = sweep.path.with_suffix(".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    except OSError as e:
        raise failed(path, "open", e) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PhonetuiError(f"sweep {sweep.id}: already running in another process (it holds {path.name})") from None
        yield
    finally:
        os.close(fd)


def drop(runs_dir: Path, sweep_id: str) -> Sweep:
    """Forget a sweep: its queue file goes (refused while a process runs it); its runs stay."""
    s = load(runs_dir, sweep_id)
    with hold(s):
        try:
            s.path.unlink()
            s.path.with_suffix(".lock").unlink(missing_ok=True)
            s.path.with_suffix(".save.lock").unlink(missing_ok=True)
        except OSError as e:
            raise failed(s.path, "delete", e) from None
    return s


def list_sweeps(runs_dir: Path) -> list[Sweep | PhonetuiError]:
    """Every sweep, newest first: readable ones as Sweep, the others as the error saying why."""
    out: list[Sweep | PhonetuiError] = []
    for p in sorted((runs_dir / SWEEPS).glob("*.json"), reverse=True):
        try:
            out.append(load(runs_dir, p.stem))
        except PhonetuiError as e:
            out.append(e)
    return out


def leaderboard(sweep: Sweep) -> list[tuple[Trial, Any]]:
    """(trial, its Run or None) best val acc first; trials without a readable run last."""
    from .runs import open_run

    rows = []
    for t in sweep.trials:
        try:
            run = open_run(sweep.runs_dir / t.run) if t.run else None
        except PhonetuiError:
            run = None
        rows.append((t, run))
    return sorted(rows, key=lambda r: -(r[1].status.best_val_acc or -1.0) if r[1] else 2.0)


def track(sweep: Sweep, trial: Trial, listen=lambda e: None):
    """A listener that records the trial's run in the sweep as soon as it starts, then passes every event on."""
    def record(e) -> None:
        if isinstance(e, RunStarted):
            _save_run(sweep, sweep.trials.index(trial), e.run.id)
        listen(e)

    return record


def _save_run(sweep: Sweep, index: int, run_id: str) -> None:
    """Record trial `index`'s run in the sweep's file: read, changed and written under `<id>.save.lock`,
    so workers training other trials of the sweep at the same time keep theirs."""
    sweep.trials[index].run = run_id
    path = sweep.path.with_suffix(".save.lock")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    except OSError as e:
        raise failed(path, "open", e) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        fresh = load(sweep.runs_dir, sweep.id) if sweep.path.exists() else sweep
        fresh.base = fresh.base or sweep.base
        fresh.trials[index].run = run_id
        fresh.save()
    finally:
        os.close(fd)


def worker_command(sweep: Sweep, trial: Trial, data_dir: Path, presets_dirs: list[Path] | None = None,
                   predict: bool = False, tensorboard: bool = False) -> list[str]:
    """The command line of the `sweep --jobs N` worker that trains one trial."""
    cmd = [sys.executable, "-m", "phonetui", "sweep", "--continue", sweep.id, "--trial", str(sweep.trials.index(trial) + 1),
           "--data", str(data_dir), "--runs", str(sweep.runs_dir)]
    for folder in presets_dirs or []:
        cmd += ["--presets", str(folder)]
    return cmd + ["--predict"] * predict + ["--tensorboard"] * tensorboard


def run_jobs(sweep: Sweep, jobs: int, data_dir: Path, say: Callable[[int, str], None], stop: threading.Event,
             announce: Callable[[int, int, Trial], None] = lambda i, n, trial: None, predict: bool = False,
             presets_dirs: list[Path] | None = None, tensorboard: bool = False) -> list[int | None]:
    """Train the sweep's pending trials in worker processes, `jobs` at once, each with its share of the
    CPU threads, holding the sweep's lock: `say(number, line)` gets each worker's lines with its
    trial's number in the sweep, `announce(i, n, trial)` each start. The exit codes (None: not
    started, after a stop)."""
    with hold(sweep):
        left = sweep.pending()
        numbers = [sweep.trials.index(t) + 1 for t in left]
        commands = [worker_command(sweep, t, data_dir, presets_dirs, predict, tensorboard) for t in left]
        return workers.run(commands, jobs, lambda job, line: say(numbers[job - 1], line), stop,
                           started=lambda job, pid: announce(job, len(left), left[job - 1]))


def run(sweep: Sweep, data, listen=lambda e: None, cancel=None, announce=lambda i, n, trial: None,
        finished=lambda run: None) -> bool:
    """Train the sweep's pending trials in order (announce(i, n, trial) before each, finished(run)
    after each), holding its lock; False when one does not finish (the rest stays queued)."""
    with hold(sweep):
        left = sweep.pending()
        for i, trial in enumerate(left, 1):
            announce(i, len(left), trial)
            done = run_trial(sweep, trial, data, listen, cancel)
            finished(done)
            if done.state != "finished":
                return False
    return True


def run_trial(sweep: Sweep, trial: Trial, data, listen=lambda e: None, cancel=None):
    """Train one trial (its run recorded in the queue as it starts); the Run. A --jobs worker calls
    this while its parent holds the sweep's lock."""
    from . import trainer

    return trainer.train(sweep.config(trial), data, sweep.runs_dir, track(sweep, trial, listen), cancel)
