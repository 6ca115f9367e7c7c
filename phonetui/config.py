"""The run configuration: one type shared by presets, CLI flags, the TUI form and the run record.

Every value has one name and one check, from the keyboard to the optimizer. Importing this module
is cheap (no torch), so the TUI can validate its form before torch has loaded.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Callable, Literal, get_args

from . import threads
from .errors import PhonetuiError

N_CLASSES = 39
FRAME_DIM = 39
PHONES = tuple("iy ih eh ae ah uw uh aa ey ay oy aw ow l r y w er m n ng ch jh dh b d dx g p t k z v f th s sh hh sil"
               .split())  # class index -> TIMIT phone (39 folded classes)
# The closed sets: each a Literal type for the fields, its tuple (the same values) for the rules and the form's lists
Activation = Literal["sigmoid", "relu", "leaky_relu", "gelu", "tanh"]
Optimizer = Literal["adam", "adamw"]
Schedule = Literal["constant", "cosine"]
Precision = Literal["auto", "fp32", "tf32", "bf16", "fp16"]
Switch = Literal["auto", "on", "off"]  # compile, capture
Decode = Literal["argmax", "viterbi"]
ModelKind = Literal["mlp", "tagger"]
Cell = Literal["lstm", "gru", "conv"]
Input = Literal["centre", "window"]
ACTIVATIONS, OPTIMIZERS, SCHEDULES = get_args(Activation), get_args(Optimizer), get_args(Schedule)
PRECISIONS, SWITCHES, DECODES = get_args(Precision), get_args(Switch), get_args(Decode)
MODEL_KINDS, CELLS, INPUTS = get_args(ModelKind), get_args(Cell), get_args(Input)
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d{1,3})?)\Z")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


CONV_WIDTH = 5  # frames seen by the tagger's convolutional front end
KERNEL = 3  # frames seen by each convolution of a conv tagger
DILATIONS = (1, 2, 4, 8, 16)  # the conv tagger's blocks cycle through these


@dataclass(frozen=True)
class ModelConfig:
    """The network: an MLP over each row's 11-frame window (kind mlp), or a tagger over whole
    utterances (kind tagger: recurrent, or dilated convolutions) that reads each frame's centre 39
    values or whole window."""

    kind: ModelKind = "mlp"
    hidden: tuple[int, ...] = (1024, 512, 128)  # mlp: hidden layer sizes
    activation: Activation = "sigmoid"  # mlp
    batchnorm: bool = False  # mlp
    dropout: float = 0.0  # mlp: after each activation; tagger: between layers and before the output
    cell: Cell = "lstm"  # tagger: lstm | gru | conv (residual blocks of dilated convolutions, no recurrence)
    layers: int = 2  # tagger: recurrent layers, or conv blocks
    size: int = 256  # tagger: hidden units per direction, or conv channels
    bidirectional: bool = True  # tagger, recurrent (a conv tagger sees both sides)
    conv: int = 0  # tagger: channels of a CONV_WIDTH-frame Conv1d + ReLU front end (0: none)
    input: Input = "centre"  # tagger: centre (the 39 values of each row's centre frame) | window (all 429)
    normalize: bool = False  # tagger: per-utterance mean/variance normalisation of the input
    time_mask: int = 0  # tagger, training only: widest of the zeroed time spans (one per 50 frames; 0: none)
    feature_mask: int = 0  # tagger, training only: widest of 2 zeroed bands of the 39 per-frame values (0: none)
    warp: float = 0.0  # tagger, training only: VTLP, spectra warped by factors in [1/(1+warp), 1+warp] (0: none)

    @property
    def sequence(self) -> bool:
        """Whether the model reads whole utterances (and batches count utterances, not rows)."""
        return self.kind == "tagger"

    def input_dim(self, width: int = 11 * FRAME_DIM) -> int:
        """Features per input step: the row width, or one frame for a tagger on centre frames."""
        return FRAME_DIM if self.sequence and self.input == "centre" else width

    def summary(self) -> str:
        """A few words naming the architecture, e.g. '1024-512-128 sigmoid' or 'BiLSTM 3x256, conv 256, window'."""
        if not self.sequence:
            return f"{'-'.join(map(str, self.hidden))} {self.activation}" + (" +BN" if self.batchnorm else "")
        cell = "dilated conv" if self.cell == "conv" else ("Bi" if self.bidirectional else "") + self.cell.upper()
        masks = ", masked" if self.time_mask or self.feature_mask else ""
        masks += f", VTLP {self.warp:g}" if self.warp else ""
        return f"{cell} {self.layers}x{self.size}" + (f", conv {self.conv}" if self.conv else "") + f", {self.input}{masks}"

    def param_count(self, width: int = 11 * FRAME_DIM) -> int:
        """Trainable parameters implied by the architecture."""
        d = self.input_dim(width)
        if not self.sequence:
            sizes = [d, *self.hidden, N_CLASSES]
            linear = sum(a * b + b for a, b in pairwise(sizes))
            return linear + (2 * sum(self.hidden) if self.batchnorm else 0)
        total, dirs, gates = 0, 2 if self.bidirectional else 1, 4 if self.cell == "lstm" else 3
        if self.conv:
            total += d * self.conv * CONV_WIDTH + self.conv
            d = self.conv
        if self.cell == "conv":  # an input convolution, then blocks of a LayerNorm, a convolution and a gate
            total += d * self.size * KERNEL + self.size
            squeeze = self.size // 8
            block = self.size * self.size * KERNEL + 3 * self.size + 2 * self.size * squeeze + squeeze + self.size
            return total + self.layers * block + 2 * self.size + self.size * N_CLASSES + N_CLASSES
        for _ in range(self.layers):
            total += dirs * gates * (d * self.size + self.size * self.size + 2 * self.size)
            d = dirs * self.size
        return total + d * N_CLASSES + N_CLASSES


EDITABLE = ("lr", "batch_size", "epochs", "min_steps", "val_ratio", "smooth", "decode", "patience", "seed", "device", "precision",
            "threads", "compile", "capture")  # flags, fields


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and bookkeeping; EDITABLE names what the command line and the form change."""

    lr: float = 1e-4
    batch_size: int = 64  # rows per batch (mlp) or utterances per batch (tagger)
    epochs: int = 20
    min_steps: int = 0  # train at least this many optimizer steps: epochs rise where the data is small (0: off)
    val_ratio: float = 0.2
    smooth: int = 1  # average posteriors over this many frames inside each utterance (1: off)
    decode: Decode = "argmax"  # viterbi: decode each utterance along phone transitions (phonetui.decode)
    patience: int = 0  # stop once val accuracy has not improved for this many epochs (0: never)
    seed: int = 0
    device: str = "auto"
    precision: Precision = "auto"  # auto: bf16 or fp16 autocast where the hardware is fast at it (device.autocast); tf32:
    # fp32 weights and matmuls as TF32 (CUDA; plain fp32 elsewhere); fp32: strict fp32, TF32 off; bf16: bf16 autocast;
    # fp16: fp16 autocast with a GradScaler (the GPUs before compute capability 8.0: T4, P100, V100)
    threads: str = "auto"  # CPU intra-op threads: auto (phonetui.threads decides, and looks again as it trains) or N
    compile: Switch = "auto"  # torch.compile the model: on | off | auto (step.plan decides, and says why)
    capture: Switch = "auto"  # CUDA-graph capture of the whole step: on | off | auto (likewise)
    optimizer: Optimizer = "adam"
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    schedule: Schedule = "constant"


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
        """Plain tables (the model's only with the keys of its kind), as preset files and run records hold them."""
        d = dataclasses.asdict(self)
        d["model"] = {k: list(v) if k == "hidden" else v for k, v in d["model"].items() if k in MODEL_KEYS[self.model.kind]}
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
    "epochs": _Rule(int, lambda v: 1 <= v <= 100_000, "must be an integer from 1 to 100000"),
    "min_steps": _Rule(int, lambda v: 0 <= v <= 10_000_000, "must be an integer from 0 (off) to 10000000"),
    "val_ratio": _Rule(float, lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "smooth": _Rule(int, lambda v: 1 <= v <= 99 and v % 2 == 1, "must be an odd integer from 1 to 99"),
    "patience": _Rule(int, lambda v: 0 <= v <= 100_000, "must be an integer from 0 (off) to 100000"),
    "seed": _Rule(int, lambda v: 0 <= v < 2**63, "must be an integer from 0 to 2**63 - 1"),
    "device": _Rule(str, lambda v: bool(_DEVICE_RE.match(v)), "must be auto, cpu, cuda, cuda:N or mps"),
    "decode": _in(DECODES),
    "precision": _in(PRECISIONS),
    "threads": _Rule(str, threads.check, "must be auto or a thread count from 1 to 9999"),
    "compile": _in(SWITCHES),
    "capture": _in(SWITCHES),
    "optimizer": _in(OPTIMIZERS),
    "weight_decay": _Rule(float, lambda v: v >= 0, "must be >= 0"),
    "label_smoothing": _Rule(float, lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "schedule": _in(SCHEDULES),
}
MODEL_RULES: dict[str, _Rule] = {
    "kind": _in(MODEL_KINDS),
    "hidden": _Rule(list, lambda v: len(v) >= 1 and all(type(h) is int and 1 <= h <= 65536 for h in v),
                    "must be a non-empty list of layer sizes (integers from 1 to 65536)"),
    "activation": _in(ACTIVATIONS),
    "batchnorm": _Rule(bool, lambda v: True, "must be true or false"),
    "dropout": _Rule(float, lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "cell": _in(CELLS),
    "layers": _Rule(int, lambda v: 1 <= v <= 16, "must be an integer from 1 to 16"),
    "size": _Rule(int, lambda v: 1 <= v <= 8192, "must be an integer from 1 to 8192"),
    "bidirectional": _Rule(bool, lambda v: True, "must be true or false"),
    "conv": _Rule(int, lambda v: 0 <= v <= 8192, "must be an integer from 0 (none) to 8192"),
    "input": _in(INPUTS),
    "normalize": _Rule(bool, lambda v: True, "must be true or false"),
    "time_mask": _Rule(int, lambda v: 0 <= v <= 100, "must be an integer from 0 (none) to 100 frames"),
    "feature_mask": _Rule(int, lambda v: 0 <= v <= FRAME_DIM, f"must be an integer from 0 (none) to {FRAME_DIM}"),
    "warp": _Rule(float, lambda v: 0 <= v <= 1, "must be in [0, 1] (0: none)"),
}
MODEL_KEYS = {"mlp": ("kind", "hidden", "activation", "batchnorm", "dropout"),
              "tagger": ("kind", "cell", "layers", "size", "bidirectional", "conv", "input", "normalize", "dropout",
                         "time_mask", "feature_mask", "warp")}


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


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def check_value(rules: dict[str, _Rule], key: str, value: Any) -> tuple[Any, str | None]:
    """(parsed value, None) or (None, reason) for one field; what the form calls on every keystroke."""
    rule = rules[key]
    try:
        parsed = _coerce(value, rule.kind)
    except (TypeError, ValueError):
        if rule.kind in (int, float) and isinstance(value, str) and not _is_number(value):
            return None, "not a number"
        return None, rule.reason
    if isinstance(parsed, float) and parsed != parsed:
        return None, rule.reason
    return (parsed, None) if rule.ok(parsed) else (None, rule.reason)


def flag_value(key: str, text: str) -> Any:
    """The value typed for training flag --key (or one item of a sweep or search list), or a
    PhonetuiError naming the flag and the text."""
    value, reason = check_value(TRAIN_RULES, key, text)
    if reason:
        raise PhonetuiError(f"--{key.replace('_', '-')} {text.strip() or repr(text)}: {reason}")
    return value


def steps_per_epoch(batch_size: int, n_train: int) -> int:
    """Optimizer steps in an epoch over `n_train` rows or utterances (the last batch may be short)."""
    return math.ceil(n_train / batch_size)


def n_epochs(n: int) -> str:
    """'1 epoch', '3 epochs'."""
    return f"{n} epoch{'s' * (n != 1)}"


def epochs_for(t: TrainConfig, n_train: int) -> int:
    """The epochs a run trains over `n_train` rows or utterances: t.epochs, or the fewest that
    reach t.min_steps optimizer steps where t.epochs would take fewer (a preset's length then holds
    on a subsample of the data)."""
    per_epoch = steps_per_epoch(t.batch_size, n_train)
    if not t.min_steps or per_epoch < 1:
        return t.epochs
    return min(max(t.epochs, math.ceil(t.min_steps / per_epoch)), 100_000)


def as_asked(changes: dict[str, Any]) -> dict[str, Any]:
    """Training overrides as a user gave them (flags, the app's prefill): epochs given without
    min_steps are trained as given, so the preset's min_steps is off."""
    return {"min_steps": 0} | changes if "epochs" in changes else changes


def fit_problems(batch_size: int, n_train: int, batchnorm: bool, unit: str = "rows") -> dict[str, str]:
    """Reasons, by field, why these values cannot train on `n_train` rows or utterances (`unit`)."""
    if n_train < 1:
        return {"val_ratio": f"leaves no training {unit}"}
    if batch_size > n_train:
        return {"batch_size": f"larger than the {n_train:,} training {unit}"}
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
    kind = parsed.get("kind", "mlp")
    for key in parsed:
        if key not in MODEL_KEYS[kind]:
            raise PhonetuiError(f"{where}.{key}: not a setting of kind = '{kind}' "
                                f"(its keys: {', '.join(MODEL_KEYS[kind])})")
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
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise PhonetuiError(f"{where}: name = {str(name)[:40]!r}: must be 1 to 64 letters, digits, '.', '_' or '-', "
                            "starting with a letter or digit (it names run folders)")
    return RunConfig(
        preset=name,
        description=str(d.get("description", "")),
        model=parse_model(d.get("model", {}), f"{where}: model"),
        training=parse_training(d.get("training", {}), f"{where}: training"),
    )
