"""The run configuration: one type shared by presets, CLI flags, the TUI form and the run record.

Every value has one name and one check, from the keyboard to the optimizer. Importing this module
is cheap (no torch), so the TUI can validate its form before torch has loaded.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Callable

from .errors import PhonetuiError

N_CLASSES = 39
FRAME_DIM = 39
ACTIVATIONS = ("sigmoid", "relu", "leaky_relu", "gelu", "tanh")
OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "cosine")
PRECISIONS = ("auto", "fp32", "bf16")
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass(frozen=True)
class ModelConfig:
    """An MLP over the 11-frame window: hidden layer sizes and what goes between them."""

    hidden: tuple[int, ...] = (1024, 512, 128)
    activation: str = "sigmoid"
    batchnorm: bool = False
    dropout: float = 0.0

    def param_count(self, input_dim: int = 11 * FRAME_DIM) -> int:
        """Trainable parameters implied by the architecture (Linear weights+biases, BatchNorm affine)."""
        sizes = [input_dim, *self.hidden, N_CLASSES]
        linear = sum(a * b + b for a, b in pairwise(sizes))
        return linear + (2 * sum(self.hidden) if self.batchnorm else 0)


EDITABLE = ("lr", "batch_size", "epochs", "val_ratio", "seed", "device", "precision")  # CLI flags and TUI form fields


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and bookkeeping; EDITABLE names what the command line and the form change."""

    lr: float = 1e-4
    batch_size: int = 64
    epochs: int = 20
    val_ratio: float = 0.2
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 autocast where the hardware is fast at it (models.use_bf16)
    optimizer: str = "adam"
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    schedule: str = "constant"


@dataclass(frozen=True)
class RunConfig:
    """A preset resolved with any overrides: everything needed to repeat a run."""

    preset: str = "baseline"
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainConfig = field(default_factory=TrainConfig)

    def with_training(self, **changes: Any) -> RunConfig:
        """A copy with training values replaced (each one checked)."""
        values = dataclasses.asdict(self.training) | changes
        return dataclasses.replace(self, training=parse_training(values, "override"))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["model"]["hidden"] = list(self.model.hidden)
        return d


@dataclass(frozen=True)
class _Rule:
    kind: type
    ok: Callable[[Any], bool]
    reason: str


def _in(options: tuple[str, ...]) -> _Rule:
    return _Rule(str, lambda v: v in options, "must be one of " + ", ".join(options))


TRAIN_RULES: dict[str, _Rule] = {
    "lr": _Rule(float, lambda v: 0 < v < 10, "must be > 0 (and < 10)"),
    "batch_size": _Rule(int, lambda v: v >= 1, "must be an integer >= 1"),
    "epochs": _Rule(int, lambda v: 1 <= v <= 100_000, "must be an integer >= 1"),
    "val_ratio": _Rule(float, lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "seed": _Rule(int, lambda v: v >= 0, "must be an integer >= 0"),
    "device": _Rule(str, lambda v: bool(_DEVICE_RE.match(v)), "must be auto, cpu, cuda, cuda:N or mps"),
    "precision": _in(PRECISIONS),
    "optimizer": _in(OPTIMIZERS),
    "weight_decay": _Rule(float, lambda v: v >= 0, "must be >= 0"),
    "label_smoothing": _Rule(float, lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "schedule": _in(SCHEDULES),
}
MODEL_RULES: dict[str, _Rule] = {
    "hidden": _Rule(list, lambda v: len(v) >= 1 and all(type(h) is int and 1 <= h <= 65536 for h in v),
                    "must be a non-empty list of layer sizes (integers >= 1)"),
    "activation": _in(ACTIVATIONS),
    "batchnorm": _Rule(bool, lambda v: True, "must be true or false"),
    "dropout": _Rule(float, lambda v: 0 <= v < 1, "must be in [0, 1)"),
}


def _coerce(value: Any, kind: type) -> Any:
    """Convert typed values (TOML) and text (CLI, form) to the rule's type, or raise ValueError."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ValueError
    if kind is list:
        if isinstance(value, (list, tuple)):
            return list(value)
        raise ValueError
    if isinstance(value, bool):
        raise ValueError
    if kind is int and isinstance(value, float):
        if not value.is_integer():
            raise ValueError
        return int(value)
    text = value.strip() if isinstance(value, str) else value
    return kind(text)


def check_value(rules: dict[str, _Rule], key: str, value: Any) -> tuple[Any, str | None]:
    """(parsed value, None) or (None, reason) for one field; what the form calls on every keystroke."""
    rule = rules[key]
    try:
        parsed = _coerce(value, rule.kind)
    except (TypeError, ValueError):
        return None, rule.reason
    if isinstance(parsed, float) and parsed != parsed:
        return None, rule.reason
    return (parsed, None) if rule.ok(parsed) else (None, rule.reason)


def fit_problems(batch_size: int, n_train: int, batchnorm: bool) -> dict[str, str]:
    """Reasons, by field, why these values cannot train on `n_train` rows (empty when they can)."""
    if n_train < 1:
        return {"val_ratio": "leaves no training rows"}
    if batch_size > n_train:
        return {"batch_size": f"larger than the {n_train:,} training rows"}
    if batchnorm and batch_size < 2:
        return {"batch_size": "BatchNorm needs batches of at least 2"}
    return {}


def _parse(rules: dict[str, _Rule], values: dict[str, Any], where: str) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        if key not in rules:
            raise PhonetuiError(f"{where}: unknown key '{key}' (known: {', '.join(rules)})")
        parsed, reason = check_value(rules, key, value)
        if reason:
            raise PhonetuiError(f"{where}.{key} = {value!r}: {reason}")
        out[key] = parsed
    return out


def parse_training(values: dict[str, Any], where: str = "training") -> TrainConfig:
    """A checked TrainConfig; unknown keys or bad values raise PhonetuiError naming `where`.key."""
    return TrainConfig(**_parse(TRAIN_RULES, values, where))


def parse_model(values: dict[str, Any], where: str = "model") -> ModelConfig:
    """A checked ModelConfig (see parse_training)."""
    parsed = _parse(MODEL_RULES, values, where)
    if "hidden" in parsed:
        parsed["hidden"] = tuple(parsed["hidden"])
    return ModelConfig(**parsed)


def from_dict(d: dict[str, Any], where: str) -> RunConfig:
    """A RunConfig from a preset file's or run record's tables (name, description, model, training)."""
    known = {"name", "preset", "description", "model", "training"}
    for key in d:
        if key not in known:
            raise PhonetuiError(f"{where}: unknown key '{key}' (known: {', '.join(sorted(known))})")
    for table in ("model", "training"):
        if not isinstance(d.get(table, {}), dict):
            raise PhonetuiError(f"{where}: '{table}' must be a table")
    name = d.get("name", d.get("preset", ""))
    if not isinstance(name, str) or not name:
        raise PhonetuiError(f"{where}: 'name' must be a non-empty string")
    return RunConfig(
        preset=name,
        description=str(d.get("description", "")),
        model=parse_model(d.get("model", {}), f"{where}: model"),
        training=parse_training(d.get("training", {}), f"{where}: training"),
    )
