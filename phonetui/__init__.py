"""phonetui: a terminal experiment runner for frame-level phoneme classification (TIMIT 11-frame)."""

__version__ = "0.1.0"
