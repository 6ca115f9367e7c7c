"""Presets: TOML files naming an architecture and its training values.

Schema (every key but `name` optional; defaults are the course sample code's)::

    name = "baseline"                  # what --preset and the TUI call it
    description = "one line"
    [model]
    kind = "mlp"                       # mlp (one row in, one label out) | tagger (whole utterances)
    # kind = "mlp":
    hidden = [1024, 512, 128]          # hidden layer sizes
    activation = "sigmoid"             # sigmoid | relu | leaky_relu | gelu | tanh
    batchnorm = false                  # BatchNorm1d after each hidden Linear
    dropout = 0.0                      # after each hidden activation, in [0, 1)
    # kind = "tagger" (a tagger over each whole utterance; needs rows in utterance order):
    cell = "lstm"                      # lstm | gru | conv: residual blocks of dilated 3-frame
                                       #   convolutions (dilations 1, 2, 4, 8, 16, 1, ...) with utterance
                                       #   context gates, no recurrence
    layers = 2                         # recurrent layers or conv blocks, 1..16
    size = 256                         # hidden units per direction, or conv channels
    bidirectional = true               # recurrent cells only
    conv = 0                           # channels of a 5-frame Conv1d + ReLU front end, 0 = none
    input = "centre"                   # centre: each row's centre frame (39 values) | window: all 429
    normalize = false                  # per-utterance mean/variance normalisation of the input
    dropout = 0.0                      # between layers (in each conv block) and before the output
    time_mask = 0                      # training only: zero spans of up to this many frames (1 per 50)
    feature_mask = 0                   # training only: zero 2 bands of up to this many of the 39 values
    warp = 0.0                         # training only: VTLP, warp spectra by factors up to 1 + this
    [training]
    lr = 1e-4                          # > 0
    batch_size = 64                    # >= 1: rows (mlp) or utterances (tagger) per batch
    epochs = 20                        # >= 1
    min_steps = 0                      # at least this many optimizer steps: more epochs on small data
    val_ratio = 0.2                    # [0, 1); from the tail (taggers: whole utterances), 0 = none
    smooth = 1                         # odd: average posteriors over this many frames in each utterance
    decode = "argmax"                  # argmax | viterbi: decode each utterance along phone transitions
    patience = 0                       # early stopping: epochs without a val acc gain, 0 = off
    seed = 0
    device = "auto"                    # auto | cpu | cuda | cuda:N | mps
    precision = "auto"                 # auto | fp32 | tf32 | bf16 | fp16: autocast for matmuls (auto: bf16
                                       #   on GPUs with bf16 units, fp16 + GradScaler on T4/V100/P100);
                                       #   on CUDA, fp32 matmuls run as TF32 unless "fp32"
    threads = "auto"                   # auto | N: CPU threads (auto: the free usable cores, looked at again
                                       #   every 2 s while it trains)
    compile = "auto"                   # auto | on | off: torch.compile the model (auto: off for now)
    capture = "auto"                   # auto | on | off: CUDA-graph capture of the whole step (CUDA, MLPs)
    optimizer = "adam"                 # adam | adamw
    weight_decay = 0.0
    label_smoothing = 0.0              # [0, 1)
    schedule = "constant"              # constant | cosine (to 0 over the run)

Built-in presets ship with the package; `./presets` and `--presets DIR` add to them (a later
folder's preset replaces an earlier one of the same name).
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

from .config import RunConfig, from_dict
from .errors import PhonetuiError
from .fileio import failed, read_text


def builtin_dir() -> Path:
    """The packaged presets (a wheel carries them in phonetui/builtin_presets; a checkout in presets/)."""
    packaged = Path(str(resources.files("phonetui"))) / "builtin_presets"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "presets"


def load_file(path: Path) -> RunConfig:
    """One preset file, checked; any problem raises PhonetuiError naming the file (and key)."""
    try:
        data = tomllib.loads(read_text(path, "preset"))
    except tomllib.TOMLDecodeError as e:
        raise PhonetuiError(f"{path}: not valid TOML ({e})") from None
    if "name" not in data:
        raise PhonetuiError(f"{path}: missing key 'name'")
    return from_dict(data, str(path))


def load_all(extra_dirs: list[Path] | None = None) -> dict[str, RunConfig]:
    """Every preset by name: built-in, then ./presets, then each extra folder (later ones win)."""
    dirs = [builtin_dir(), Path("presets"), *(extra_dirs or [])]
    presets: dict[str, RunConfig] = {}
    seen: set[Path] = set()
    for d in dirs:
        if d in (extra_dirs or []) and not d.is_dir():
            raise PhonetuiError(f"{d}: presets folder not found" if not d.exists() else f"{d}: not a folder")
        if not d.is_dir() or d.resolve() in seen:
            continue
        seen.add(d.resolve())
        try:
            paths = sorted(d.glob("*.toml"))
        except OSError as e:
            raise failed(d, "list the presets folder", e) from None
        for path in paths:
            preset = load_file(path)
            presets[preset.preset] = preset
    return presets


def get(presets: dict[str, RunConfig], name: str) -> RunConfig:
    """The preset called `name`, or a PhonetuiError listing the known ones."""
    if name not in presets:
        raise PhonetuiError(f"unknown preset '{name}' (known: {', '.join(sorted(presets))})")
    return presets[name]
