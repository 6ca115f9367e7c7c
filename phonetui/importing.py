"""Notebook runs into the run store: the epoch lines of the course code's log (`[013/020] Train Acc:
... | Val Acc: ... loss: ...`, as phonetui.trainer.log_line writes them too) become a run folder that
History, Compare and `phonetui runs` read like any other. The run is marked imported (its Outcome),
has metrics only (no model, no last.pt) and records its settings as given: the course sample code's
(the built-in `baseline` preset) with the user's `--set key=value` changes.

What a line may carry: anything before the `[` (a notebook's timestamp or line number), trailing
whitespace, a \\r\\n ending, and phonetui's own `  (12.3 s)` after it (the epoch's seconds; a
notebook's log has none, so they read as nan: unknown). `saving model with acc 0.704` lines are
skipped like any other line: they repeat a val acc to three places, and the first one kept often
belongs to an epoch the log no longer has. Every refusal is one PhonetuiError naming the log and
line: no epoch line, two runs in one log (another total, the counter starting again, val columns
coming or going), epochs out of order or repeated, an epoch line cut short.
"""

from __future__ import annotations

import math
import re
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import presets, runs
from .config import _NAME_RE, MODEL_KEYS, MODEL_RULES, TRAIN_RULES, RunConfig, check_value, parse_model
from .errors import PhonetuiError
from .fileio import read_bytes
from .runs import EpochMetrics, Outcome, Run, RunStatus

STDIN = "-"  # the LOGFILE that means standard input
_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)"
EPOCH_HEAD = re.compile(r"\[(\d+)/(\d+)\] Train Acc:")  # a line with this is an epoch line, whole or cut short
EPOCH = re.compile(rf"\[(?P<epoch>\d+)/(?P<total>\d+)\] Train Acc: (?P<train_acc>{_NUM}) Loss: (?P<train_loss>{_NUM})"
                   rf"(?: \| Val Acc: (?P<val_acc>{_NUM}) loss: (?P<val_loss>{_NUM}))?"
                   rf"(?:\s+\((?P<seconds>{_NUM}) s[^)]*\))?\s*\Z")


@dataclass(frozen=True)
class Log:
    """The epochs read from one log, in order; `where` names it in messages (a path, or 'stdin')."""

    where: str
    total: int  # the epochs the run was set to train (`/020`)
    epochs: tuple[EpochMetrics, ...]  # lr not known from the lines: 0.0 until the config gives it

    @property
    def has_val(self) -> bool:
        return self.epochs[0].val_acc is not None


def _float(m: re.Match, key: str) -> float | None:
    return None if m[key] is None else float(m[key])


def parse(text: str, where: str) -> Log:
    """The epoch lines of a log, checked to be one run's; anything else, one PhonetuiError line naming
    `where` and the line number. A gap (a partial log: epochs 13-20 only) is fine."""
    epochs: list[EpochMetrics] = []
    total = 0
    for n, line in enumerate(text.split("\n"), 1):
        head = EPOCH_HEAD.search(line)
        if head is None:
            continue  # "saving model with acc ...", a notebook's other output
        m = EPOCH.match(line, head.start())
        if m is None:
            raise PhonetuiError(f"{where}:{n}: an epoch line cut short or changed ({line[head.start():][:60]!r})")
        e, t = int(m["epoch"]), int(m["total"])
        metrics = EpochMetrics(epoch=e, train_acc=float(m["train_acc"]), train_loss=float(m["train_loss"]),
                               val_acc=_float(m, "val_acc"), val_loss=_float(m, "val_loss"), lr=0.0,
                               seconds=math.nan if m["seconds"] is None else float(m["seconds"]))
        if not 1 <= e <= t:
            raise PhonetuiError(f"{where}:{n}: epoch {e} of {t}: not an epoch of the run")
        if epochs:
            last = epochs[-1]
            if t != total:
                raise PhonetuiError(f"{where}:{n}: epoch {e}/{t} after {last.epoch}/{total}: two runs in one log "
                                    "(their totals differ); import each on its own")
            if e == 1 and last.epoch > 1:
                raise PhonetuiError(f"{where}:{n}: epoch 1 after epoch {last.epoch}: the epoch counter starts again "
                                    "(two runs in one log); import each on its own")
            if e <= last.epoch:
                raise PhonetuiError(f"{where}:{n}: epoch {e} after epoch {last.epoch}: "
                                    + ("a repeated epoch" if e == last.epoch else "epochs out of order")
                                    + " (two runs in one log?)")
            if (metrics.val_acc is None) != (last.val_acc is None):
                with_val = ("without", "with") if metrics.val_acc is None else ("with", "without")
                raise PhonetuiError(f"{where}:{n}: epoch {e} {with_val[0]} a Val part after epoch {last.epoch} "
                                    f"{with_val[1]} one: two runs in one log; import each on its own")
        epochs.append(metrics)
        total = t
    if not epochs:
        raise PhonetuiError(f"{where}: no epoch lines (the course code's '[013/020] Train Acc: ... Loss: ...')")
    return Log(where, total, tuple(epochs))


def _set_value(key: str, text: str) -> Any:
    """A --set value's text as its rule's type (true/false; a layer list as 2048,1024 or [2048, 1024]),
    checked by the config's own rule; a PhonetuiError naming the --set."""
    rules = TRAIN_RULES if key in TRAIN_RULES else MODEL_RULES
    value: Any = text
    kind = rules[key].kind
    if kind is bool:
        value = {"true": True, "false": False}.get(text.strip().lower(), text)
    elif kind is list:
        items = text.strip().removeprefix("[").removesuffix("]").split(",")
        value = [int(i) if i.strip().isdigit() else i for i in items]
    parsed, reason = check_value(rules, key, value)
    if reason:
        raise PhonetuiError(f"--set {key}={text}: {reason}")
    return parsed


def settings(sets: list[str], log: Log) -> RunConfig:
    """The course sample code's settings (the built-in baseline) with `sets` (key=value, the config's
    own keys and checks) applied. Epochs are the log's total unless set; a log without Val parts
    trained with VAL_RATIO 0 unless val_ratio is set."""
    base = presets.load_file(presets.builtin_dir() / "baseline.toml")
    training: dict[str, Any] = {"epochs": log.total} | ({} if log.has_val else {"val_ratio": 0.0})
    model: dict[str, Any] = {}
    given: dict[str, str] = {}  # key: the --set as typed
    for item in sets:
        key, eq, text = item.partition("=")
        key = key.strip().removeprefix("training.").removeprefix("model.")
        if not eq or not key:
            raise PhonetuiError(f"--set {item}: not key=value (e.g. --set lr=1e-4)")
        if key not in TRAIN_RULES and key not in MODEL_RULES:
            raise PhonetuiError(f"--set {item}: unknown key '{key}' (training: {', '.join(TRAIN_RULES)}; "
                                f"model: {', '.join(MODEL_RULES)})")
        (training if key in TRAIN_RULES else model)[key] = _set_value(key, text)
        given[key] = item
    kind = model.get("kind", base.model.kind)
    values = model if kind != base.model.kind else base.to_dict()["model"] | model
    for key in model:
        if key not in MODEL_KEYS[kind]:
            raise PhonetuiError(f"--set {given[key]}: not a setting of a model of kind {kind} "
                                f"(its keys: {', '.join(MODEL_KEYS[kind])})")
    last = log.epochs[-1].epoch
    if training["epochs"] < last:
        raise PhonetuiError(f"--set {given['epochs']}: the log goes on to epoch {last}")
    return replace(base.with_training(**training), description=f"imported from {log.where}",
                   model=parse_model(values, "--set"))


def read(logfile: str) -> tuple[str, str]:
    """(the log's text, what names it): a file, or standard input for '-'. Bytes that are not UTF-8
    read as U+FFFD: only the epoch lines, ASCII, matter."""
    if logfile == STDIN:
        stream = getattr(sys.stdin, "buffer", None)
        raw = stream.read() if stream is not None else sys.stdin.read()
        return (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw), "stdin"
    return read_bytes(Path(logfile), "log").decode("utf-8", "replace"), logfile


def _folder_name(name: str | None, logfile: str) -> str:
    """--name as given (checked like a preset's name: it names the run folder), else the log's stem
    made fit for one ('stdin' for standard input)."""
    if name is not None:
        if not _NAME_RE.match(name):
            raise PhonetuiError(f"--name {name!r}: must be 1 to 64 letters, digits, '.', '_' or '-', starting with "
                                "a letter or digit (it names the run folder)")
        return name
    if logfile == STDIN:
        return "stdin"
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(logfile).stem).lstrip("._-")[:64]
    return stem or "imported"


def import_log(logfile: str, runs_dir: Path, name: str | None = None, sets: list[str] | None = None) -> Run:
    """A finished, imported run folder from a log's epoch lines (see the module's docstring); nothing is
    made when the log, --name or a --set is refused."""
    folder = _folder_name(name, logfile)
    text, where = read(logfile)
    log = parse(text, where)
    cfg = settings(sets or [], log)
    metrics = [replace(m, lr=cfg.training.lr) for m in log.epochs]
    validated = [m for m in metrics if m.val_acc is not None and not math.isnan(m.val_acc)]
    best = max(validated, key=lambda m: m.val_acc or 0.0, default=None)  # the first of equals, as the notebook saved
    now = time.strftime("%Y-%m-%d %H:%M:%S")
    source = where if logfile == STDIN else str(Path(logfile).resolve())
    record = {"imported": source, "imported_at": now} | ({"name": name} if name is not None else {})
    first, last = metrics[0].epoch, metrics[-1].epoch
    kept = f"epochs {first}-{last}" if first != last else f"epoch {last}"
    status = RunStatus(status="finished", epochs_done=last, best_epoch=best.epoch if best else None,
                       best_val_acc=best.val_acc if best else None, started=now, ended=now,
                       message=f"imported from {where}: {kept} of {log.total} ({len(metrics)} line{'s' * (len(metrics) != 1)})",
                       outcome=Outcome.IMPORTED)
    return runs.create_imported(runs_dir, cfg, record, folder, status, metrics)
