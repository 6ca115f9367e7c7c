"""Sweeps: a preset crossed with lists of training values, every trial an ordinary run.

A sweep is a queue kept in `<runs>/.sweeps/<id>.json` (its preset, the grid, each trial's values
and, once started, its run id), so it survives the process that ran it: `phonetui sweep --continue
ID` and the app pick up what is left. Optuna studies (phonetui.search) build on the same pieces.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .config import EDITABLE, RunConfig, flag_value
from .errors import PhonetuiError
from .runs import write_text

SWEEPS = ".sweeps"


def parse_grid(texts: dict[str, str]) -> dict[str, list[Any]]:
    """{key: "v1,v2,..."} -> {key: [parsed values]}, each value checked by the key's own rule."""
    grid = {}
    for key, text in texts.items():
        if key not in EDITABLE:
            raise PhonetuiError(f"sweep: '{key}' is not a training value a sweep can vary (those are: {', '.join(EDITABLE)})")
        values = []
        for item in str(text).split(","):
            value = flag_value(key, item)
            if value not in values:
                values.append(value)
        grid[key] = values
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

    @property
    def path(self) -> Path:
        return self.runs_dir / SWEEPS / f"{self.id}.json"

    def config(self, base: RunConfig, trial: Trial) -> RunConfig:
        return base.with_training(**trial.values)

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
             "trials": [asdict(t) for t in self.trials]}
        write_text(self.path, json.dumps(d, indent=1) + "\n")


def create(runs_dir: Path, preset: str, grid: dict[str, list[Any]]) -> Sweep:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    sweep = Sweep(f"{stamp}-{preset}", preset, grid, [Trial(v) for v in expand(grid)], runs_dir,
                  time.strftime("%Y-%m-%d %H:%M:%S"))
    n = 1
    while sweep.path.exists():
        n += 1
        sweep.id = f"{stamp}-{preset}-{n}"
    sweep.save()
    return sweep


def load(runs_dir: Path, sweep_id: str) -> Sweep:
    path = runs_dir / SWEEPS / f"{sweep_id}.json"
    try:
        d = json.loads(path.read_text())
        return Sweep(d["id"], d["preset"], d["grid"], [Trial(t["values"], t.get("run")) for t in d["trials"]],
                     runs_dir, d.get("created", ""))
    except FileNotFoundError:
        raise PhonetuiError(f"{path}: no such sweep") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise PhonetuiError(f"{path}: damaged sweep record ({e})") from None


def list_sweeps(runs_dir: Path) -> list[Sweep]:
    """Every readable sweep, newest first."""
    out = []
    for p in sorted((runs_dir / SWEEPS).glob("*.json"), reverse=True):
        try:
            out.append(load(runs_dir, p.stem))
        except PhonetuiError:
            continue
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
    from . import trainer

    def record(e) -> None:
        if isinstance(e, trainer.RunStarted):
            trial.run = e.run.id
            sweep.save()
        listen(e)

    return record


def run(sweep: Sweep, base: RunConfig, data, listen=lambda e: None, cancel=None,
        announce=lambda i, n, trial: None) -> bool:
    """Train the sweep's pending trials in order (announce(i, n, trial) before each); False when
    one does not finish (the rest stays queued)."""
    from . import trainer

    left = sweep.pending()
    for i, trial in enumerate(left, 1):
        announce(i, len(left), trial)
        if trainer.train(sweep.config(base, trial), data, sweep.runs_dir, track(sweep, trial, listen), cancel).state != "finished":
            return False
    return True
