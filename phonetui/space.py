"""The value syntax of the training values, parsed in one place for the CLI's flags and the form's
fields alike. A value's text is:
- one value (`3e-4`): a run;
- a list (`1e-3,3e-4`): a sweep trains each; in an Optuna search, a choice among them;
- a range (`1e-4:1e-2`), of a number only: an Optuna search draws from it (log-uniform for lr,
  integers for an integer value, uniform otherwise). In a text value a colon is the value's own
  (`cuda:1`).

Each value inside is checked by its key's own rule (config.TRAIN_RULES). Torch-free, so the form
uses it on every keystroke.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Iterable

from .config import TRAIN_RULES, check_value
from .errors import PhonetuiError

RANGE_REASON = "a range needs numbers LO:HI with LO < HI"


class Shape(StrEnum):
    VALUE = "value"
    LIST = "list"
    RANGE = "range"


class Job(StrEnum):
    """What a set of fields asks for: a run, a sweep (a list somewhere) or a search (a range somewhere)."""

    RUN = "run"
    SWEEP = "sweep"
    SEARCH = "search"


@dataclass(frozen=True)
class Field:
    key: str
    shape: Shape
    values: tuple[Any, ...]  # VALUE: (v,); LIST: its distinct values in order; RANGE: (lo, hi)

    @property
    def value(self) -> Any:
        """The field's first value: what a run trains with while the form shows a list or a range."""
        return self.values[0]


def read(key: str, text: str) -> tuple[Field | None, str | None]:
    """(the field, None), or (None, why not) as the form shows it under the field."""
    if intent(key, text) == Shape.RANGE:
        parts = text.split(":")
        if len(parts) != 2 or "," in text:
            return None, RANGE_REASON
        (low, why_low), (high, why_high) = (check_value(TRAIN_RULES, key, p) for p in parts)
        if why_low or why_high or not isinstance(low, (int, float)) or isinstance(low, bool) or not low < high:
            return None, RANGE_REASON
        return Field(key, Shape.RANGE, (low, high)), None
    items, values = text.split(","), []
    for item in items:
        value, why = check_value(TRAIN_RULES, key, item)
        if why:
            return None, why if len(items) == 1 else f"{item.strip() or repr(item)}: {why}"
        if value not in values:
            values.append(value)
    return Field(key, Shape.LIST if len(items) > 1 else Shape.VALUE, tuple(values)), None


def intent(key: str, text: str) -> Shape:
    """The shape the text asks for by its separators alone, valid or not (the form shows a search's
    own fields as soon as a range is typed)."""
    numeric = TRAIN_RULES[key].kind in (int, float)
    return Shape.RANGE if ":" in text and numeric else Shape.LIST if "," in text else Shape.VALUE


def parse(key: str, text: str) -> Field:
    """A flag's field, or a PhonetuiError naming the flag, the text (the item, in a list) and why."""
    if key not in TRAIN_RULES:
        raise PhonetuiError(f"'{key}' is not a training value (those are: {', '.join(TRAIN_RULES)})")
    text = str(text)
    field, why = read(key, text)
    if why and intent(key, text) == Shape.LIST:
        item = next(i for i in text.split(",") if check_value(TRAIN_RULES, key, i)[1])
        text, why = item, check_value(TRAIN_RULES, key, item)[1]
    if why:
        raise PhonetuiError(f"--{key.replace('_', '-')} {text.strip() or repr(text)}: {why}")
    return field


def one_value(key: str, text: str, preset: str) -> Any:
    """A flag's one value (`train`, `resume`, a sweep's or a search's fixed values); a list or a range
    there is refused with the command that trains it."""
    shape = intent(key, text)
    if shape != Shape.VALUE:
        command = "sweep" if shape == Shape.LIST else "search"
        raise PhonetuiError(f"--{key.replace('_', '-')} {text}: a {shape} trains many runs: "
                            f"`phonetui {command} --preset {preset} --{key.replace('_', '-')} {text}`")
    return parse(key, text).value


def job(fields: Iterable[Field]) -> Job:
    shapes = {f.shape for f in fields}
    return Job.SEARCH if Shape.RANGE in shapes else Job.SWEEP if Shape.LIST in shapes else Job.RUN
