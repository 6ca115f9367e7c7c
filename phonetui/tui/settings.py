"""The app's settings: what the command line asked for, as one typed object (built by the CLI)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import EDITABLE


@dataclass(frozen=True)
class Settings:
    data: Path | None = None  # None: the built-in demo set
    runs: Path = Path("runs")
    presets: tuple[Path, ...] = ()  # extra presets folders
    preset: str = "baseline"
    given: dict[str, str] = field(default_factory=dict)  # training values typed on the command line
    trials: int = 8  # an Optuna search's trials, and trials at once (worker processes)
    jobs: int = 1
    tensorboard: bool = False  # each run's TensorBoard event files (and each --jobs worker's: it gets the flag)

    @classmethod
    def from_args(cls, args) -> Settings:
        """From `phonetui [flags]` (cli.parser's namespace)."""
        return cls(data=args.data, runs=args.runs, presets=tuple(args.presets or ()), preset=args.preset,
                   given={k: str(v) for k in EDITABLE if (v := getattr(args, k, None)) is not None},
                   trials=max(1, args.trials or 8), jobs=max(1, args.jobs or 1),
                   tensorboard=bool(getattr(args, "tensorboard", False)))
