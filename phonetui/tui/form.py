"""The hyperparameter form: the EDITABLE fields, checked on every keystroke with the core's own rules."""

from __future__ import annotations

from typing import Any, Callable

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Input, Label, Select, Static

from .. import space
from ..storage import missing
from ..config import (DECODES, EDITABLE, PRECISIONS, SWITCHES, TRAIN_RULES, RunConfig, check_value, epochs_for,
                      fit_problems, steps_per_epoch)

FIELDS = {key: {"batch_size": "batch size", "min_steps": "min steps", "val_ratio": "VAL_RATIO"}.get(key, key)
          for key in EDITABLE}
CHOICES = ("decode", "device", "precision", "compile", "capture")  # chosen from lists; the other fields are typed
SEARCH = {"trials": "trials", "jobs": "jobs"}  # an Optuna search's own fields, shown while a field holds a range
# (jobs also while one holds a list: a sweep's trials at once)
LABELS = FIELDS | SEARCH


def field_text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


class ConfigForm(Vertical):
    """Edits a RunConfig's training values; `base` is what "modified" compares against."""

    class Changed(Message):
        """A field changed (the app refreshes what depends on VAL_RATIO)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base = RunConfig()
        self.origin = ""
        self.train_units: Callable[[float, bool], int] | None = None  # rows or utterances left to train on
        self.devices: frozenset[str] | None = None
        self.problems: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        yield Static(id="form-title")
        yield Static(id="model-line")
        for key, label in FIELDS.items():
            with Horizontal(classes="field"):
                yield Label(label)
                if key in CHOICES:
                    yield Select([(v, v) for v in self._options(key)], allow_blank=False, compact=True, id=f"f-{key}")
                else:
                    yield Input(id=f"f-{key}", compact=True)
            yield Static(id=f"r-{key}", classes="reason")
        for key, label in SEARCH.items():
            with Horizontal(classes="field", id=f"row-{key}"):
                yield Label(label)
                yield Input(id=f"f-{key}", compact=True, tooltip=f"the Optuna search's {label}")
            yield Static(id=f"r-{key}", classes="reason")

    def set_search(self, trials: int, jobs: int) -> None:
        """An Optuna search's trials and jobs (trials at once, each its own process)."""
        self.query_one("#f-trials", Input).value = str(trials)
        self.query_one("#f-jobs", Input).value = str(jobs)

    def search(self) -> tuple[int, int]:
        """(trials, jobs) of an Optuna search, or (trials, jobs) with jobs the trials at once of a
        sweep (call only when `problems` is empty)."""
        return int(self.text("trials")), int(self.text("jobs"))

    def fill(self, cfg: RunConfig, origin: str, overrides: dict[str, str] | None = None) -> None:
        """Show cfg's training values (raw override text wins) and make cfg the unmodified state."""
        self.base, self.origin = cfg, origin
        m = cfg.model
        self.query_one("#model-line", Static).update(
            f"model {m.summary()}" + (f" drop {m.dropout:g}" if m.dropout else "")
            + f" · {m.param_count():,} params" + (" · batch = utterances" if m.sequence else ""))
        with self.app.batch_update():
            for key in FIELDS:
                text = (overrides or {}).get(key)
                self.set_text(key, text if text is not None else field_text(getattr(cfg.training, key)))
        self.validate()

    def _options(self, key: str, current: str = "") -> list[str]:
        """A list field's choices: the devices torch found here (or auto and cpu until it has
        loaded), the precisions, auto/on/off, plus a value the preset asks for that is not among them."""
        options = {"precision": list(PRECISIONS), "compile": list(SWITCHES), "capture": list(SWITCHES),
                   "decode": list(DECODES)}.get(
            key, sorted(self.devices or {"auto", "cpu"}))
        return options + [current] if current and current not in options else options

    def set_text(self, key: str, text: str) -> None:
        if key in CHOICES:
            select = self.query_one(f"#f-{key}", Select)
            select.set_options([(v, v) for v in self._options(key, text)])
            select.value = text
        else:
            self.query_one(f"#f-{key}", Input).value = text

    def set_devices(self, devices: frozenset[str]) -> None:
        """torch has loaded: offer the devices it found (keeping the chosen one)."""
        self.devices = devices
        self.set_text("device", self.text("device"))
        self.validate()

    def text(self, key: str) -> str:
        if key in CHOICES:
            return str(self.query_one(f"#f-{key}", Select).value)
        return self.query_one(f"#f-{key}", Input).value

    def read(self, key: str) -> tuple[space.Field | None, str | None]:
        """A field's value, list (a sweep, or an Optuna search's choices) or range LO:HI (an Optuna
        search), or why it is none (phonetui.space, as the CLI's flags read)."""
        text = self.text(key)
        if key in CHOICES:  # chosen from a list: one value, whatever its characters
            value, why = check_value(TRAIN_RULES, key, text)
            return (None, why) if why else (space.Field(key, space.Shape.VALUE, (value,)), None)
        return space.read(key, text)

    def ranges(self) -> dict[str, str]:
        """The fields holding a range LO:HI (valid or not yet): any makes Start an Optuna search
        (lists become its choices)."""
        return {k: self.text(k) for k in FIELDS if k not in CHOICES and space.intent(k, self.text(k)) == space.Shape.RANGE}

    def values(self) -> dict[str, Any]:
        """The parsed value of every valid field (the first of a list, the low end of a range)."""
        return {k: f.value for k in FIELDS if (f := self.read(k)[0]) is not None}

    def lists(self) -> dict[str, list[Any]]:
        """The valid fields holding several values: what a sweep varies (empty for a single run)."""
        return {k: list(f.values) for k in FIELDS if (f := self.read(k)[0]) is not None and f.shape == space.Shape.LIST}

    def job(self) -> space.Job:
        """What Start makes of the form: a search where a field holds a range (its lists become the
        search's choices), a sweep where one holds a list, else a run."""
        return space.job(f for k in FIELDS if (f := self.read(k)[0]) is not None)

    def config(self) -> RunConfig:
        """The base config with the form's values (call only when `problems` is empty)."""
        return self.base.with_training(**self.values())

    def validate(self) -> None:
        """Check every field (and batch vs training rows, device availability); mark the bad ones."""
        problems = {k: why for k in FIELDS if (why := self.read(k)[1])}
        values, lists = self.values(), self.lists()
        if self.train_units and "batch_size" in values and "val_ratio" in values:
            seq = self.base.model.sequence
            for ratio in lists.get("val_ratio", [values["val_ratio"]]):
                n, unit = self.train_units(ratio, seq), "utterances" if seq else "rows"
                batch = max(lists.get("batch_size", [values["batch_size"]]))
                fit = fit_problems(batch, n, self.base.model.batchnorm, unit)
                if "batch_size" in fit and batch <= self.train_units(self.base.training.val_ratio, seq):
                    fit = {"val_ratio": f"leaves {n:,} training {unit}, fewer than the batch size {batch}"}  # its doing
                problems |= fit
        if self.devices is not None and values.get("device", "auto") not in self.devices:
            problems["device"] = f"not available here (have {', '.join(sorted(self.devices))})"
        searching = bool(self.ranges())
        if searching and (why := missing()):  # said before F5, not as a failed training after it
            problems.setdefault(next(iter(self.ranges())), why)
        for key in SEARCH:
            shown = searching or (key == "jobs" and bool(lists))
            self.query_one(f"#row-{key}").display = shown
            text = self.text(key).strip()
            if shown and not (text.isdigit() and int(text) >= 1):
                problems[key] = "must be an integer >= 1"
        self.problems = {k: problems[k] for k in LABELS if k in problems}
        hints = {"min_steps": self._epochs_hint(values)} if not problems else {}
        if values.get("val_ratio") == 0:
            hints["val_ratio"] = "no validation: the last epoch's model is kept (patience is off)"
        for key in LABELS:
            reason = problems.get(key, "")
            text = reason or hints.get(key, "")
            self.query_one(f"#f-{key}").set_class(bool(reason), "-invalid")
            self.query_one(f"#r-{key}", Static).set_class(not reason, "-hint")
            self.query_one(f"#r-{key}", Static).update(text)
            self.query_one(f"#r-{key}", Static).display = bool(text)
        self._show_title()

    def _epochs_hint(self, values: dict[str, Any]) -> str:
        """What min_steps does to the epochs on this data ('' where it changes nothing)."""
        if not self.train_units or self.lists() or not values.get("min_steps"):
            return ""
        t = self.config().training
        n = self.train_units(t.val_ratio, self.base.model.sequence)
        epochs = epochs_for(t, n)
        return f"{epochs} epochs here: {steps_per_epoch(t.batch_size, n):,} steps an epoch" if epochs > t.epochs else ""

    def modified(self) -> list[str]:
        """Fields whose value differs from the base config."""
        values, lists = self.values(), self.lists()
        return [k for k in FIELDS if k in lists or values.get(k, object()) != getattr(self.base.training, k)]

    def _show_title(self) -> None:
        changed = ", ".join(FIELDS[k] for k in self.modified())
        note = f"[$warning]· modified: {changed}[/]" if changed else "[$text-muted]· unmodified[/]"
        if self.ranges():
            trials, jobs = (self.text(k).strip() for k in SEARCH)
            note += f" [$accent]· Optuna search, {trials} trials" + (f", {jobs} at a time" if jobs != "1" else "") + "[/]"
        elif lists := self.lists():
            n = 1
            for values in lists.values():
                n *= len(values)
            jobs = self.text("jobs").strip()
            note += f" [$accent]· sweep of {n} runs" + (f", {jobs} at a time" if jobs != "1" else "") + "[/]"
        self.query_one("#form-title", Static).update(f"[b]{escape(self.origin)}[/b] {note}")

    @on(Input.Changed)
    @on(Select.Changed)
    def field_changed(self, event: Input.Changed | Select.Changed) -> None:
        event.stop()
        self.validate()
        self.post_message(self.Changed())
