"""The homework report: the figures a student puts in a report, as PNG and SVG, and a Markdown file
that shows them with a table of the runs.

    <out>/curves-<run>.png/.svg     accuracy and loss, train and val, per epoch (the points inside
                                    the epochs thin and grey)
    <out>/overlay.png/.svg          val accuracy and val loss of every run (2+ runs)
    <out>/confusion-<run>.png/.svg  the best model's confusion matrix, rows normalised (where kept)
    <out>/report.md                 the table (settings that differ, best val acc with its 95%
                                    interval, against the best run, test acc) and the figures

matplotlib is an extra (`phonetui[report]`), imported only here and only when a report is written,
drawing on Figure objects with the Agg canvas: no pyplot, no global backend, safe in a worker thread.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__, diagnostics, noise
from .config import PHONES
from .errors import PhonetuiError
from .fileio import write_text
from .runs import EpochMetrics, Run, StepPoint, differences

MISSING = "the report needs matplotlib: pip install 'phonetui[report]'"
DPI = 100
CURVES_SIZE = (10.0, 4.0)  # inches: 1000 x 400 pixels at DPI
OVERLAY_SIZE = (10.0, 4.0)
CONFUSION_SIZE = (9.0, 8.0)  # 900 x 800: 39 phone labels on each axis stay readable
FORMATS = ("png", "svg")
MARKDOWN = "report.md"
REPORT_FILES = (MARKDOWN, "overlay.*", "curves-*.*", "confusion-*.*")  # what a folder holding a report has


@dataclass(frozen=True)
class Entry:
    """One run, read once: its epochs, the points inside them, and its best model's matrix and counts."""

    run: Run
    metrics: list[EpochMetrics]
    steps: list[StepPoint]
    matrix: Any  # np.ndarray (39, 39) or None
    counts: noise.Counts | None

    @property
    def best(self) -> EpochMetrics | None:
        """The best epoch by val acc (the first of equals, as the trainer saves), None without validation."""
        scored = [m for m in self.metrics if m.val_acc is not None]
        return max(scored, key=lambda m: m.val_acc) if scored else None

    @property
    def name(self) -> str:
        """The run id made safe for a file name and a Markdown link."""
        return re.sub(r"[^A-Za-z0-9._-]", "_", self.run.id)


@dataclass(frozen=True)
class Written:
    """Where a report went and the files written there (report.md last)."""

    out: Path
    files: list[Path]


def import_matplotlib():
    """matplotlib's Figure and Agg canvas, or a PhonetuiError saying how to install them."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PhonetuiError(MISSING) from None
    return matplotlib, Figure, FigureCanvasAgg


def read(runs: list[Run]) -> list[Entry]:
    """Each run's files read and checked before anything is drawn: a run with no epoch, or a damaged
    file, is a PhonetuiError naming the run; the same run given twice counts once."""
    entries, seen = [], {}
    for run in runs:
        key = run.path.resolve()
        if key in seen.values():
            continue
        if run.id in seen:
            raise PhonetuiError(f"{run.path}: another run given is named {run.id} too (their figures would share names)")
        seen[run.id] = key
        metrics = run.metrics()
        if not metrics:
            raise PhonetuiError(f"{run.path}: no epoch recorded yet: nothing to report")
        entries.append(Entry(run, metrics, run.steps(), diagnostics.matrix(run), diagnostics.val_counts(run)))
    if not entries:
        raise PhonetuiError("report: name at least one run")
    return entries


def default_out(base: Path = Path("reports")) -> Path:
    """reports/<date>-<time>/ in the current folder; -2, -3... when that folder is there already."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        path = base / (stamp + (f"-{n}" if n > 1 else ""))
        if not path.exists():
            return path
    raise PhonetuiError(f"{base}: cannot make a new report folder (too many named {stamp})")


def refuse_if_taken(out: Path) -> None:
    """A folder that holds a report's files already is left as it is (a report never overwrites one)."""
    if out.exists() and not out.is_dir():
        raise PhonetuiError(f"{out}: not a folder")
    taken = [p.name for pattern in REPORT_FILES for p in sorted(out.glob(pattern))] if out.is_dir() else []
    if taken:
        raise PhonetuiError(f"{out}: holds a report already ({taken[0]}); name another --out folder")


def write(runs: list[Run], out: Path | None = None) -> Written:
    """Write the report of `runs` into `out` (default_out() when None); nothing is written when a run
    cannot be read, matplotlib is missing or `out` holds a report already."""
    entries = read(runs)
    matplotlib, Figure, Canvas = import_matplotlib()
    out = default_out() if out is None else out
    refuse_if_taken(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PhonetuiError(f"{out}: cannot make the report folder ({e.strerror or e})") from None
    files: list[Path] = []

    def save(fig, stem: str) -> None:
        Canvas(fig)
        for fmt in FORMATS:
            path = out / f"{stem}.{fmt}"
            fig.savefig(path, format=fmt, dpi=DPI, metadata={"Date": None} if fmt == "svg" else None)
            files.append(path)

    # text stays text in the SVG (searchable, smaller); fixed ids so the same run gives the same file
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "phonetui", "font.size": 9}):
        for e in entries:
            save(_curves(Figure, e), f"curves-{e.name}")
        if len(entries) > 1:
            save(_overlay(Figure, entries), "overlay")
        for e in entries:
            if e.matrix is not None:
                save(_confusion(Figure, e), f"confusion-{e.name}")
    write_text(out / MARKDOWN, markdown(entries, [p.name for p in files]))
    files.append(out / MARKDOWN)
    return Written(out, files)


# -- the figures ---------------------------------------------------------------------------------

def _curves(Figure, e: Entry):
    """Accuracy and loss, train and val, at each epoch's end; the running train numbers inside the
    epochs (steps.csv) thin and grey. The axis starts at the run's first epoch (imported and partial runs)."""
    fig = Figure(figsize=CURVES_SIZE, dpi=DPI, layout="constrained")
    epochs = [m.epoch for m in e.metrics]
    first = epochs[0] - 1 if e.steps else epochs[0]
    for ax, what in zip(fig.subplots(1, 2), ("acc", "loss")):
        if e.steps:
            ax.plot([p.at for p in e.steps], [getattr(p, f"train_{what}") for p in e.steps], color="0.6",
                    linewidth=0.6, label="train (within epochs)")
        ax.plot(epochs, [getattr(m, f"train_{what}") for m in e.metrics], marker="o", markersize=3, label="train")
        val = [(m.epoch, getattr(m, f"val_{what}")) for m in e.metrics if getattr(m, f"val_{what}") is not None]
        if val:
            ax.plot(*zip(*val), marker="o", markersize=3, label="val")
        if what == "acc" and (best := e.best) is not None:
            ax.axvline(best.epoch, color="0.8", linestyle=":", linewidth=1)
        ax.set_xlim(first - 0.1 if first == epochs[-1] else first, epochs[-1] + (0.1 if first == epochs[-1] else 0))
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy" if what == "acc" else "loss")
        ax.set_title(("accuracy" if what == "acc" else "loss") + " (train / val)")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right" if what == "acc" else "upper right")
    fig.suptitle(f"{e.run.id} · preset {e.run.config.preset}")
    return fig


def _overlay(Figure, entries: list[Entry]):
    """Val accuracy and val loss of every run on the same axes."""
    fig = Figure(figsize=OVERLAY_SIZE, dpi=DPI, layout="constrained")
    for ax, what in zip(fig.subplots(1, 2), ("acc", "loss")):
        for e in entries:
            val = [(m.epoch, getattr(m, f"val_{what}")) for m in e.metrics if getattr(m, f"val_{what}") is not None]
            if val:
                ax.plot(*zip(*val), marker="o", markersize=3, label=e.run.id)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"val {'accuracy' if what == 'acc' else 'loss'}")
        ax.set_title(f"val {'accuracy' if what == 'acc' else 'loss'}")
        ax.grid(True, alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=7)
    fig.suptitle(f"{len(entries)} runs")
    return fig


def shares(matrix) -> Any:
    """Each row as the share of the true phone's frames (a phone with no frame: a row of zeros)."""
    import numpy as np

    frames = matrix.sum(1, keepdims=True)
    return np.divide(matrix, frames, out=np.zeros(matrix.shape), where=frames > 0)


def _confusion(Figure, e: Entry):
    """The best model's confusion matrix as a heat map: a row a true phone, normalised to its frames."""
    fig = Figure(figsize=CONFUSION_SIZE, dpi=DPI, layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(shares(e.matrix), cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    ticks = range(len(PHONES))
    ax.set_xticks(ticks, PHONES, rotation=90, fontsize=6)
    ax.set_yticks(ticks, PHONES, fontsize=6)
    ax.set_xlabel("predicted phone")
    ax.set_ylabel("true phone")
    best = e.best
    ax.set_title(f"{e.run.id}: best model" + (f" (epoch {best.epoch})" if best else "") + " on the validation frames")
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the true phone's frames")
    return fig


# -- the Markdown --------------------------------------------------------------------------------

def _cell(v: Any) -> str:
    text = "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)
    return text.replace("|", "\\|")


def best_cell(e: Entry) -> str:
    """Best val acc with its 95% interval where the best model's per-utterance counts were kept."""
    best = e.best
    if best is None:
        return "-"
    ci = noise.interval(e.counts) if e.counts is not None else None
    return f"{best.val_acc:.4f}" + (f" [{ci.lo:.4f}, {ci.hi:.4f}]" if ci else "")


def markdown(entries: list[Entry], names: list[str]) -> str:
    """report.md: the table of runs, then each figure (PNG shown, SVG linked) that was written."""
    diff = differences([e.run for e in entries])
    vs = diagnostics.versus_best([e.run for e in entries], {e.run.id: e.counts for e in entries})  # as Compare
    # and the leaderboards say it, on the counts read above
    head = ["run", *diff, "epochs", "best val acc [95%]", "best epoch", "vs best", "test acc"]
    lines = [f"# Report: {len(entries)} run{'s' if len(entries) > 1 else ''}", "",
             f"Written {time.strftime('%Y-%m-%d %H:%M')} by phonetui {__version__}. Best val acc is the best "
             "epoch's (metrics.csv), with its 95% interval by bootstrap over the validation utterances; "
             "*vs best* is the difference from the best run in points with its 95% interval (paired where the "
             "runs share a validation split), beyond or within noise.", "",
             "| " + " | ".join(head) + " |", "|" + "|".join("---" if i <= len(diff) else "---:" for i in range(len(head))) + "|"]
    for i, e in enumerate(entries):
        best = e.best
        row = [e.run.id, *(_cell(values[i]) for values in diff.values()),
               f"{e.metrics[0].epoch}-{e.metrics[-1].epoch}" if e.metrics[0].epoch != 1 else str(e.metrics[-1].epoch),
               best_cell(e), str(best.epoch) if best else "-", vs[e.run.id], _cell(e.run.test_acc)]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")

    def figure(stem: str, title: str) -> None:
        if f"{stem}.png" in names:
            lines.extend([f"### {title}", "", f"![{title}]({stem}.png)", "", f"SVG: [{stem}.svg]({stem}.svg)", ""])

    lines.extend(["## Training curves", ""])
    for e in entries:
        figure(f"curves-{e.name}", e.run.id)
    if "overlay.png" in names:
        lines.extend(["## The runs overlaid", ""])
        figure("overlay", "val accuracy and val loss")
    if any(f"confusion-{e.name}.png" in names for e in entries):
        lines.extend(["## Confusion matrices", "", "A row a true phone, as the share of its validation frames "
                      "that the best model took for each phone.", ""])
        for e in entries:
            figure(f"confusion-{e.name}", e.run.id)
    return "\n".join(lines)
