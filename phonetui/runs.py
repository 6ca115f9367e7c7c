"""The run store: one folder per run under `runs/`, every file written atomically.

    runs/<id>/config.toml     the resolved RunConfig plus a [run] table (data, device, versions)
    runs/<id>/status.json     status (running/finished/stopped/failed), best epoch and accuracy
    runs/<id>/metrics.csv     epoch, train_acc, train_loss, val_acc, val_loss, lr, seconds, val_acc_raw
    runs/<id>/per_phone.csv   per-class val accuracy of best.pt; confusions.csv its most confused pairs
    runs/<id>/best.pt         {"model": ModelConfig dict, "input_dim", "state_dict", ...}
    runs/<id>/last.pt         the state at the end of the last epoch (model, optimizer, RNG): resume
    runs/<id>/prediction.csv  Id,Class once exported
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
import time
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

import tomli_w

from .config import RunConfig, from_dict
from .errors import PhonetuiError

CONFIG, STATUS, METRICS, CHECKPOINT, PREDICTION = "config.toml", "status.json", "metrics.csv", "best.pt", "prediction.csv"
LAST = "last.pt"


@dataclass(frozen=True)
class EpochMetrics:
    """One epoch's numbers; val_* are None when there is no validation split."""

    epoch: int
    train_acc: float
    train_loss: float
    val_acc: float | None
    val_loss: float | None
    lr: float
    seconds: float
    val_acc_raw: float | None = None  # without smoothing, when the run smooths (training.smooth > 1)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temp file beside `path`, then rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Run:
    """A run folder: its config, its record and its status."""

    path: Path
    config: RunConfig
    record: dict[str, Any]
    status: dict[str, Any]

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def state(self) -> str:
        """finished / stopped / failed / running, or interrupted for a running run whose process is gone."""
        s = self.status.get("status", "unknown")
        if s == "running" and not _pid_alive(int(self.status.get("pid", 0))):
            return "interrupted"
        return s

    def update_status(self, **changes: Any) -> None:
        self.status.update(changes)
        write_text(self.path / STATUS, json.dumps(self.status, indent=1) + "\n")

    def write_metrics(self, rows: list[EpochMetrics]) -> None:
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow([f.name for f in fields(EpochMetrics)])
        for m in rows:
            w.writerow(["" if v is None else (f"{v:.6g}" if isinstance(v, float) else v) for v in asdict(m).values()])
        write_text(self.path / METRICS, out.getvalue())

    def metrics(self) -> list[EpochMetrics]:
        """The epochs recorded so far (empty before the first epoch ends)."""
        path = self.path / METRICS
        if not path.is_file():
            return []
        try:
            with open(path, newline="") as f:
                return [EpochMetrics(int(r["epoch"]), float(r["train_acc"]), float(r["train_loss"]),
                                     float(r["val_acc"]) if r["val_acc"] else None,
                                     float(r["val_loss"]) if r["val_loss"] else None,
                                     float(r["lr"]), float(r["seconds"]),
                                     float(r["val_acc_raw"]) if r.get("val_acc_raw") else None)
                        for r in csv.DictReader(f)]
        except (KeyError, ValueError, TypeError) as e:
            raise PhonetuiError(f"{path}: malformed metrics ({e})") from None


def create(runs_dir: Path, config: RunConfig, record: dict[str, Any]) -> Run:
    """A new run folder named <date>-<time>-<preset>, with its config written and status 'running'."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    runs_dir.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        path = runs_dir / (f"{stamp}-{config.preset}" + (f"-{n}" if n > 1 else ""))
        try:
            path.mkdir()
            break
        except FileExistsError:
            continue
    else:
        raise PhonetuiError(f"{runs_dir}: cannot make a new run folder")
    run = Run(path, config, record, {})
    write_text(path / CONFIG, tomli_w.dumps(config.to_dict() | {"run": record}))
    run.update_status(status="running", pid=os.getpid(), started=record.get("started", ""),
                      epochs_done=0, best_epoch=None, best_val_acc=None, message="")
    return run


def open_run(path: Path) -> Run:
    """A run folder read back; one that is not a run raises PhonetuiError naming what is missing."""
    if not path.is_dir():
        raise PhonetuiError(f"{path}: run folder not found")
    for name in (CONFIG, STATUS):
        if not (path / name).is_file():
            raise PhonetuiError(f"{path}: not a run folder (no {name})")
    try:
        with open(path / CONFIG, "rb") as f:
            data = tomllib.load(f)
        status = json.loads((path / STATUS).read_text())
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PhonetuiError(f"{path}: damaged run record ({e})") from None
    record = data.pop("run", {})
    return Run(path, from_dict(data, str(path / CONFIG)), record, status)


def list_runs(runs_dir: Path) -> list[Run]:
    """Every run under runs_dir, newest first; folders that are not runs are skipped."""
    if not runs_dir.is_dir():
        return []
    runs = []
    for p in sorted(runs_dir.iterdir(), reverse=True):
        try:
            runs.append(open_run(p))
        except PhonetuiError:
            continue
    return runs


def delete(run: Run) -> None:
    """Remove a run folder and everything in it; refused while its training is alive."""
    if run.state == "running":
        raise PhonetuiError(f"{run.path}: still training (stop it first)")
    try:
        shutil.rmtree(run.path)
    except OSError as e:
        raise PhonetuiError(f"{run.path}: cannot delete ({e.strerror or e})") from None
