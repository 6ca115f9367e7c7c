"""The run store: one folder per run under `runs/`, every file written atomically.

    runs/<id>/config.toml      the resolved RunConfig plus a [run] table (data, device, versions)
    runs/<id>/status.json      RunStatus: written only by the training process, which holds run.lock
    runs/<id>/run.lock         flock-ed by the training process while it lives (a reused pid cannot fake it)
    runs/<id>/metrics.csv      epoch, train_acc, train_loss, val_acc, val_loss, lr, seconds, val_acc_raw, gain_lo, gain_hi
    runs/<id>/steps.csv        StepPoint rows inside each epoch: the running train loss and accuracy, lr
    runs/<id>/per_phone.csv    per-class val accuracy of best.pt; confusions.csv its most confused pairs
    runs/<id>/best.pt          {"model": ModelConfig dict, "input_dim", "state_dict", ...}
    runs/<id>/last.pt          the state at the end of the last epoch (model, optimizer, RNG): resume
    runs/<id>/prediction.csv   Id,Class once exported; prediction.json records it (PredictionRecord)

A run folder is made whole in a hidden temp folder beside it and renamed into place, so a folder
that looks like a run always has its config, status and lock. One that cannot be read back is
listed as a DamagedRun with the reason.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import io
import json
import os
import shutil
import time
import tomllib
import uuid
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, get_args

import tomli_w

from .config import RunConfig, from_dict
from .errors import PhonetuiError
from .fileio import FILE_MODE, append_text, failed, read_text, write_text

CONFIG, STATUS, LOCK, METRICS, STEPS = "config.toml", "status.json", "run.lock", "metrics.csv", "steps.csv"
CHECKPOINT, LAST = "best.pt", "last.pt"
PREDICTION, PREDICTION_RECORD = "prediction.csv", "prediction.json"
class Outcome(StrEnum):
    """How a run ended, as status.json's `outcome` records it ("" while it runs)."""

    RUNNING = ""
    FINISHED = "finished"
    EARLY_STOPPED = "early-stopped"  # patience
    STOPPED = "stopped"  # the user
    STOPPED_BY_SIGNAL = "stopped-by-signal"  # SIGTERM, SIGHUP
    PRUNED = "pruned"  # Optuna
    FAILED = "failed"
    IMPORTED = "imported"  # read from a notebook's log (phonetui.importing): status finished, no model



State = Literal["running", "finished", "stopped", "failed"]  # what status.json says (a run also reads as
STATES = get_args(State)  # "interrupted" when its status says running and no process holds its lock)
OUTCOMES = tuple(o.value for o in Outcome)  # "": still running
ERROR_LOG = "error.log"  # a failed run's whole traceback, for a bug report


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def _typed(data: dict[str, Any], types: dict[str, tuple[type, ...]], where: Path) -> dict[str, Any]:
    """`data` checked against {key: accepted types} (bool is never an int here); unknown keys dropped."""
    if not isinstance(data, dict):
        raise PhonetuiError(f"{where}: expected a JSON object, got {type(data).__name__}")
    out = {}
    for key, kinds in types.items():
        if key not in data:
            continue
        v = data[key]
        if (isinstance(v, bool) and bool not in kinds) or not isinstance(v, kinds):
            raise PhonetuiError(f"{where}: '{key}' = {json.dumps(v)[:40]} has the wrong type")
        out[key] = float(v) if float in kinds and isinstance(v, int) else v
    return out


@dataclass
class RunStatus:
    """What status.json holds; `status` is one of STATES."""

    status: State = "running"
    pid: int = 0
    epochs_done: int = 0
    best_epoch: int | None = None
    best_val_acc: float | None = None
    started: str = ""
    ended: str = ""
    message: str = ""
    outcome: Outcome = Outcome.RUNNING  # how it ended (the message says it in words)

    @classmethod
    def parse(cls, data: Any, where: Path) -> RunStatus:
        """A checked RunStatus from JSON data; the wrong shape or types raise PhonetuiError naming the key."""
        types: dict[str, tuple[type, ...]] = {"status": (str,), "pid": (int,), "epochs_done": (int,),
                                              "best_epoch": (int, type(None)), "best_val_acc": (float, int, type(None)),
                                              "started": (str,), "ended": (str,), "message": (str,),
                                              "outcome": (str,)}
        values = _typed(data, types, where)
        if "status" not in values:
            raise PhonetuiError(f"{where}: no 'status'")
        if values["status"] not in STATES:
            raise PhonetuiError(f"{where}: unknown status {values['status']!r}")
        if values.get("outcome", "") not in OUTCOMES:
            raise PhonetuiError(f"{where}: unknown outcome {values['outcome'][:40]!r}")
        if "outcome" in values:
            values["outcome"] = Outcome(values["outcome"])
        return cls(**values)


@dataclass(frozen=True)
class PredictionRecord:
    """The last test-set prediction of a run: the CSV written, test accuracy (with labels), when."""

    path: str
    test_acc: float | None = None
    written: str = ""

    @classmethod
    def parse(cls, data: Any, where: Path) -> PredictionRecord:
        values = _typed(data, {"path": (str,), "test_acc": (float, int, type(None)), "written": (str,)}, where)
        if "path" not in values:
            raise PhonetuiError(f"{where}: no 'path'")
        return cls(**values)


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
    gain_lo: float | None = None  # an epoch that saved a new best model: the 95% interval of its val acc
    gain_hi: float | None = None  # gain over the last best (paired bootstrap over utterances, phonetui.noise)


@dataclass(frozen=True)
class StepPoint:
    """The training inside an epoch, a point every few seconds: the mean train loss and accuracy of
    the frames stepped since the last point, and the learning rate there. `at` places it on the
    epoch axis (epoch 3 half done: 2.5; EpochMetrics of epoch 3 sit at 3.0)."""

    epoch: int
    at: float
    step: int  # optimizer steps since the run began
    train_loss: float
    train_acc: float
    lr: float

    def row(self) -> str:
        return f"{self.epoch},{self.at:.4f},{self.step},{self.train_loss:.6g},{self.train_acc:.6g},{self.lr:.6g}\n"


STEP_HEADER = ",".join(f.name for f in fields(StepPoint)) + "\n"


def _lock_held(path: Path) -> bool:
    """Whether some process holds the run's lock (a shared try-lock fails while the trainer holds it)."""
    try:
        fd = os.open(path / LOCK, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


@dataclass(frozen=True)
class RunRecord:
    """The [run] table of config.toml, typed: what a training recorded about itself. A key missing, or
    of another type (a folder someone else made), reads as None; the table is kept as it is beside it."""

    uid: str | None = None
    data: str | None = None  # the data folder it trained on, resolved
    train_rows: int | None = None
    val_rows: int | None = None
    device: str | None = None
    autocast: str | None = None  # off | bf16 | fp16 (runs before fp16 recorded bf16_autocast)
    bf16_autocast: bool | None = None
    epochs_asked: int | None = None
    started: str | None = None
    threads: int | None = None
    imported: str | None = None  # the log an imported run was read from (its path, or 'stdin')

    @classmethod
    def of(cls, table: dict[str, Any]) -> RunRecord:
        kinds = {f.name: f.type for f in fields(cls)}
        ok = {"str | None": str, "int | None": int, "bool | None": bool}
        return cls(**{k: v for k, v in table.items() if k in kinds and type(v) is ok[kinds[k]]})


@dataclass
class Run:
    """A run folder: its config, its record, its status and its last prediction.

    The Run that runs.create returns holds the run's lock and is the only one that writes its
    status (write_status); every other copy reads."""

    path: Path
    config: RunConfig
    record: dict[str, Any]
    status: RunStatus
    prediction: PredictionRecord | None = None
    _lock: int | None = field(default=None, repr=False, compare=False)

    @property
    def id(self) -> str:
        return self.path.name

    def snapshot(self) -> Run:
        """A copy that stays as the run is now (status, record, prediction), for another thread to
        read while the training thread goes on writing; it holds no lock, so it cannot write."""
        return replace(self, record=dict(self.record), status=replace(self.status), _lock=None)

    @property
    def info(self) -> RunRecord:
        """The record, typed."""
        return RunRecord.of(self.record)

    @property
    def uid(self) -> str:
        """A token no other run has (a copied folder shares it with its original); the id for older runs."""
        return str(self.record.get("uid", self.id))

    @property
    def epochs_note(self) -> str:
        """A few words when min_steps raised the epochs (on small data), else ''."""
        asked, t = self.record.get("epochs_asked"), self.config.training
        return f"epochs {asked} -> {t.epochs}: min_steps {t.min_steps:,}" if isinstance(asked, int) else ""

    @property
    def state(self) -> str:
        """finished / stopped / failed / running, or interrupted for a running run whose process is gone,
        or imported for a finished run read from a log."""
        if self.status.status == "running" and self._lock is None and not _lock_held(self.path):
            return "interrupted"
        return Outcome.IMPORTED.value if self.imported else self.status.status

    @property
    def imported(self) -> bool:
        """Whether the run was read from a log (phonetui import): its epochs only, no model, no last.pt."""
        return self.status.outcome == Outcome.IMPORTED

    def refuse_if_imported(self, to: Literal["predict", "resume"]) -> None:
        """The one line for what needs a model or last.pt (predict, resume), asked of
        an imported run (it has neither)."""
        if self.imported:
            raise PhonetuiError(f"{self.path}: imported from a log: " + {
                "predict": "no model to predict with", "resume": "nothing to resume"}[to])

    @property
    def test_acc(self) -> float | None:
        """The last prediction's test accuracy (None before one, or without test labels)."""
        return self.prediction.test_acc if self.prediction else None

    def write_status(self, **changes: Any) -> None:
        """Change and write status.json; only the training process (the lock holder) may."""
        if self._lock is None:
            raise RuntimeError(f"{self.path}: only the training process writes {STATUS}")
        if unknown := set(changes) - {f.name for f in fields(RunStatus)}:  # a misspelt key is a bug, not a new field
            raise TypeError(f"write_status: RunStatus has no field {', '.join(sorted(unknown))}")
        for key, value in changes.items():
            setattr(self.status, key, value)
        write_text(self.path / STATUS, json.dumps(asdict(self.status), indent=1) + "\n")

    def update_record(self, **changes: Any) -> None:
        """Change and rewrite the [run] table of config.toml (the training process only, like the status)."""
        if self._lock is None:
            raise RuntimeError(f"{self.path}: only the training process writes {CONFIG}")
        self.record.update(changes)
        write_text(self.path / CONFIG, _config_text(self.config, self.record))

    def acquire(self) -> None:
        """Become the run's writer (to resume it): take its lock and re-read its status; refused while
        another process holds the lock."""
        try:
            fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, FILE_MODE)
        except OSError as e:
            raise failed(self.path / LOCK, "open", e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.status = RunStatus.parse(json.loads(read_text(self.path / STATUS)), self.path / STATUS)
        except BaseException as e:
            os.close(fd)
            if isinstance(e, BlockingIOError):
                raise PhonetuiError(f"{self.path}: still training (its process holds {LOCK})") from None
            if isinstance(e, json.JSONDecodeError):
                raise PhonetuiError(f"{self.path / STATUS}: not valid JSON ({e})") from None
            raise
        self._lock = fd

    def release(self) -> None:
        """End the training process's hold on the run (after its last status write)."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def write_metrics(self, rows: list[EpochMetrics]) -> None:
        write_text(self.path / METRICS, _metrics_text(rows))

    def metrics(self) -> list[EpochMetrics]:
        """The epochs recorded so far (empty before the first epoch ends)."""
        path = self.path / METRICS
        if not path.exists():
            return []
        try:
            return [EpochMetrics(int(r["epoch"]), float(r["train_acc"]), float(r["train_loss"]),
                                 float(r["val_acc"]) if r["val_acc"] else None,
                                 float(r["val_loss"]) if r["val_loss"] else None,
                                 float(r["lr"]), float(r["seconds"]),
                                 float(r["val_acc_raw"]) if r.get("val_acc_raw") else None,
                                 float(r["gain_lo"]) if r.get("gain_lo") else None,
                                 float(r["gain_hi"]) if r.get("gain_hi") else None)
                    for r in csv.DictReader(io.StringIO(read_text(path)))]
        except (KeyError, ValueError, TypeError) as e:
            raise PhonetuiError(f"{path}: malformed metrics ({e})") from None


    def add_step(self, p: StepPoint) -> None:
        """Append a point to steps.csv (the training process: a line every few seconds, not a rewrite)."""
        path = self.path / STEPS
        append_text(path, (STEP_HEADER if not path.exists() else "") + p.row())

    def keep_steps(self, epochs: int) -> None:
        """Drop the points after epoch `epochs` (a resumed run trains the cut epoch again)."""
        if (self.path / STEPS).exists():
            write_text(self.path / STEPS, STEP_HEADER + "".join(p.row() for p in self.steps() if p.epoch <= epochs))

    def steps(self) -> list[StepPoint]:
        """The points inside the epochs so far (none for runs from before steps.csv). A last line cut
        short by a killed process is left out; any other bad line is a PhonetuiError naming the file."""
        path = self.path / STEPS
        if not path.exists():
            return []
        lines = read_text(path).split("\n")
        if lines[0] + "\n" != STEP_HEADER:
            raise PhonetuiError(f"{path}: not a steps file (its header is not {STEP_HEADER.strip()})")
        points = []
        for n, line in enumerate(lines[1:], 2):
            if not line:
                continue
            try:
                e, at, step, loss, acc, lr = line.split(",")
                points.append(StepPoint(int(e), float(at), int(step), float(loss), float(acc), float(lr)))
            except ValueError:
                if n == len(lines):  # the last line, without its newline: cut short
                    break
                raise PhonetuiError(f"{path}: line {n} is not a step point ({line[:40]!r})") from None
        return points


@dataclass(frozen=True)
class DamagedRun:
    """A folder that looks like a run but cannot be read back; `reason` says why."""

    path: Path
    reason: str
    state = "damaged"

    @property
    def id(self) -> str:
        return self.path.name


def record_prediction(run: Run, csv_path: Path, test_acc: float | None) -> PredictionRecord:
    """Note a written prediction in the run's own prediction.json (never in status.json, which the
    training process may be writing at the same time)."""
    rec = PredictionRecord(str(csv_path.resolve()), test_acc, _now())
    write_text(run.path / PREDICTION_RECORD, json.dumps(asdict(rec), indent=1) + "\n")
    run.prediction = rec
    return rec


def _metrics_text(rows: list[EpochMetrics]) -> str:
    """metrics.csv: a header, then an epoch a line (None as an empty cell)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow([f.name for f in fields(EpochMetrics)])
    for m in rows:
        w.writerow(["" if v is None else (f"{v:.6g}" if isinstance(v, float) else v) for v in asdict(m).values()])
    return out.getvalue()


def _config_text(config: RunConfig, record: dict[str, Any]) -> str:
    """config.toml: the resolved config and its [run] record."""
    return tomli_w.dumps(config.to_dict() | {"run": record})


def create(runs_dir: Path, config: RunConfig, record: dict[str, Any]) -> Run:
    """A new run folder named <date>-<time>-<preset>, status 'running', its lock held by this process.

    Made whole in a hidden temp folder and renamed into place; on any failure nothing is left."""
    return _create(runs_dir, config, record, config.preset, RunStatus(pid=os.getpid(), started=record.get("started", "")))


def create_imported(runs_dir: Path, config: RunConfig, record: dict[str, Any], name: str, status: RunStatus,
                    metrics: list[EpochMetrics]) -> Run:
    """A run folder <date>-<time>-<name> read from a log (phonetui.importing): its status final and its
    metrics.csv written before the folder appears, its lock not held (no process trains it)."""
    return _create(runs_dir, config, record, name, status, metrics)


def _create(runs_dir: Path, config: RunConfig, record: dict[str, Any], name: str, status: RunStatus,
            metrics: list[EpochMetrics] | None = None) -> Run:
    """Make the folder whole in a hidden temp folder and rename it into place; on any failure nothing is
    left. The lock is kept held for a training run (no `metrics` yet), released for an imported one."""
    base = f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"
    record = {"uid": uuid.uuid4().hex} | record
    tmp = runs_dir / f".new-{base}-{os.getpid()}"
    lock = None
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        lock = os.open(tmp / LOCK, os.O_RDWR | os.O_CREAT, FILE_MODE)
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        write_text(tmp / CONFIG, _config_text(config, record))
        write_text(tmp / STATUS, json.dumps(asdict(status), indent=1) + "\n")
        if metrics is not None:
            write_text(tmp / METRICS, _metrics_text(metrics))
        path = _move_into_place(tmp, runs_dir, base)
    except OSError as e:
        raise failed(Path(e.filename or runs_dir), "make a run folder", e) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
            if lock is not None:
                os.close(lock)
    if metrics is not None and lock is not None:
        os.close(lock)
        lock = None
    return Run(path, config, record, status, None, lock)


def _move_into_place(tmp: Path, runs_dir: Path, base: str) -> Path:
    """Rename the finished temp folder to `base`, or `base-2`, `base-3`... when taken."""
    for n in range(1, 1000):
        path = runs_dir / (base + (f"-{n}" if n > 1 else ""))
        if path.exists():
            continue
        try:
            tmp.rename(path)  # fails if another process took the name meanwhile (its folder is not empty)
            return path
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
    raise PhonetuiError(f"{runs_dir}: cannot make a new run folder (too many named {base})")


def find(given: Path, runs_dir: Path) -> Path:
    """A run folder named by its path, or by its bare id in the runs folder (as `phonetui runs` lists it)."""
    if not given.exists() and len(given.parts) == 1 and (runs_dir / given).is_dir():
        return runs_dir / given
    return given


def open_run(path: Path) -> Run:
    """A run folder read back; one that is not a run, or is damaged, raises PhonetuiError saying why."""
    if not path.is_dir():
        raise PhonetuiError(f"{path}: run folder not found" if not path.exists() else f"{path}: not a folder")
    if not (path / CONFIG).exists() and not (path / STATUS).exists():
        raise PhonetuiError(f"{path}: not a run folder (no {CONFIG} or {STATUS})")
    try:
        data = tomllib.loads(read_text(path / CONFIG))
        status = RunStatus.parse(json.loads(read_text(path / STATUS)), path / STATUS)
    except tomllib.TOMLDecodeError as e:
        raise PhonetuiError(f"{path / CONFIG}: not valid TOML ({e})") from None
    except json.JSONDecodeError as e:
        raise PhonetuiError(f"{path / STATUS}: not valid JSON ({e})") from None
    _clean_temp_files(path)
    record = data.pop("run", {})
    if not isinstance(record, dict):
        raise PhonetuiError(f"{path / CONFIG}: 'run' must be a table")
    config = from_dict(data, str(path / CONFIG))
    prediction = None
    if (path / PREDICTION_RECORD).exists():
        raw = read_text(path / PREDICTION_RECORD)
        try:
            prediction = PredictionRecord.parse(json.loads(raw), path / PREDICTION_RECORD)
        except json.JSONDecodeError as e:
            raise PhonetuiError(f"{path / PREDICTION_RECORD}: not valid JSON ({e})") from None
    return Run(path, config, record, status, prediction)


TRAINER_FILES = (CONFIG, STATUS, METRICS, STEPS, CHECKPOINT, LAST, "per_phone.csv", "confusions.csv", "confusion.csv",
                 "val_utterances.csv")


def _clean_temp_files(path: Path) -> None:
    """Remove the temp files a killed training left (kill -9 inside a save: up to the size of last.pt),
    while no process holds the run's lock: only the training process writes these files."""
    if not any(path.glob(".*.tmp")) or _lock_held(path):
        return
    for name in TRAINER_FILES:
        for tmp in path.glob(f".{name}.*.tmp"):
            try:
                tmp.unlink()
            except OSError:
                pass  # a read-only folder: listing the run still works


def list_runs(runs_dir: Path) -> list[Run | DamagedRun]:
    """Every run under runs_dir, newest first: readable ones as Run, the others as DamagedRun.
    Folders without a config or status (and hidden ones, such as runs being made) are skipped."""
    if runs_dir.exists() and not runs_dir.is_dir():
        raise PhonetuiError(f"{runs_dir}: not a folder")
    try:
        entries = sorted(runs_dir.iterdir(), reverse=True) if runs_dir.exists() else []
    except OSError as e:
        raise failed(runs_dir, "list the runs folder", e) from None
    runs: list[Run | DamagedRun] = []
    for p in entries:
        try:
            if p.name.startswith(".") or not p.is_dir() or not any((p / n).exists() for n in (CONFIG, STATUS)):
                continue
            runs.append(open_run(p))
        except PhonetuiError as e:
            runs.append(DamagedRun(p, str(e).removeprefix(f"{p}/").removeprefix(f"{p}: ")))
        except OSError as e:
            runs.append(DamagedRun(p, f"cannot read ({e.strerror})"))
    return runs


def delete(run: Run | DamagedRun) -> None:
    """Remove a run folder and everything in it; refused while its training is alive."""
    if run.state == "running" or _lock_held(run.path):
        raise PhonetuiError(f"{run.path}: still training (stop it first)")
    try:
        shutil.rmtree(run.path)
    except OSError as e:
        raise PhonetuiError(f"{run.path}: cannot delete ({e.strerror or e})") from None


def _settings(run: Run) -> dict[str, Any]:
    """A run's config flat: preset, then model.* and training.* keys."""
    d = run.config.to_dict()
    out: dict[str, Any] = {"preset": d["preset"]}
    for table in ("model", "training"):
        out |= {f"{table}.{k}": v for k, v in d[table].items()}
    return out


def differences(runs: list[Run]) -> dict[str, list[Any]]:
    """The config keys whose values are not the same in every run, with each run's value (None: unset):
    what Compare and the report show beside the runs' numbers."""
    flats = [_settings(r) for r in runs]
    keys = list(dict.fromkeys(k for f in flats for k in f))
    return {k: [f.get(k) for f in flats] for k in keys if len({repr(f.get(k)) for f in flats}) > 1}
