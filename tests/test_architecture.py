"""The architecture as contracts (import-linter, in pyproject.toml): the headless core never imports
the app, the CLI or Textual, and what the form and the app need before torch loads imports no torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_import_contracts_hold() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    r = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "Contracts: 2 kept, 0 broken." in r.stdout, r.stdout + r.stderr
