"""Line charts of training curves (plotext underneath): one run's accuracy, loss and learning rate
(its epochs, and the points inside them), or several runs' val accuracy."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static
from textual_plotext import PlotextPlot

if TYPE_CHECKING:
    from ..runs import EpochMetrics, StepPoint

Series = dict[str, list[tuple[float, float]]]  # legend label -> (epoch, value) points (inside an epoch: 2.5)


class Chart(PlotextPlot):
    """One metric over epochs: a line per series, epoch ticks on x, the y axis fitted to the values
    (so a 0.840 -> 0.830 change looks like the small change it is), its title on top. With `colors`
    the lines take them and the legend is the caller's (a Legend line: plotext's own covers the
    curves and drops a title wider than the chart); under SMALL rows the x label goes, so that the
    few rows there are show the curves."""

    SMALL = 14

    def __init__(self, title: str, colors: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.title = title
        self.series_colors = colors or {}
        self.series: Series = {}

    def on_resize(self) -> None:
        self.show(self.series)

    def show(self, series: Series) -> None:
        self.series = series
        small = self.size.height < self.SMALL
        plt = self.plt
        plt.clear_figure()
        plt.title(self.title[:max(self.size.width - 2, 1)])
        points = [p for line in series.values() for p in line]
        if points:
            xs = [x for x, _ in points]
            lo, hi = min(v for _, v in points), max(v for _, v in points)
            pad = max((hi - lo) * 0.08, abs(hi) * 0.002, 1e-3 if hi >= 1e-2 else abs(hi) * 0.05 + 1e-12)
            plt.ylim(lo - pad, hi + pad)
            if all(x == int(x) for x in xs):  # epochs only
                plt.xlim(min(xs) - 0.2, max(xs) + 0.2)
            else:  # inside an epoch too: the axis runs to the end of the epoch in progress
                plt.xlim(math.floor(min(xs)), math.ceil(max(xs)))
            epochs = list(range(math.floor(min(xs) + 0.2), math.ceil(max(xs) - 0.2) + 1))
            plt.xticks(epochs[::max(1, round(len(epochs) / 8))])
            for label, line in series.items():
                if line:
                    xs, ys = zip(*line)
                    plt.plot(xs, ys, label=None if self.series_colors else label, marker="braille",
                             color=self.series_colors.get(label))
        if not small:
            plt.xlabel("epoch")
        self.refresh()


ANSI = {"blue": "ansi_blue", "orange": "ansi_yellow", "green": "ansi_green", "red": "ansi_red", "magenta": "ansi_magenta",
        "cyan": "ansi_cyan", "blue+": "ansi_bright_blue", "red+": "ansi_bright_red", "gray": "ansi_bright_black"}
# plotext's names for the terminal's colours (its orange is ANSI colour 3), as Textual's markup names them
LINE_COLORS = [c for c in ANSI if c != "gray"]  # one a run, in turn, where several are overlaid


def colors_for(labels: list[str]) -> dict[str, str]:
    """A colour for each line, in turn (they come round again after eight)."""
    return {label: LINE_COLORS[i % len(LINE_COLORS)] for i, label in enumerate(labels)}


def legend(colors: dict[str, str]) -> str:
    """Rich markup naming each line in its colour, e.g. '━━ train  ━━ val'."""
    return "  ".join(f"[{ANSI[c]}]━━[/] {label}" for label, c in colors.items())


class RunCharts(Vertical):
    """A run's train/val accuracy and loss, each epoch and running inside the epochs (steps.csv), and
    its learning rate, charted beside them where it changes (a cosine schedule): a constant rate is
    one number, in the run line and the epoch table."""

    COLORS = {"train": "blue", "val": "orange", "running": "gray"}
    LEGEND = {"train": "blue", "val": "orange", "train, inside the epoch": "gray"}

    def compose(self) -> ComposeResult:
        yield Static(legend(self.LEGEND), classes="chart-legend")
        with Horizontal():
            yield Chart("accuracy", self.COLORS, classes="acc-chart")
            yield Chart("loss", self.COLORS, classes="loss-chart")
            yield Chart("learning rate", {"lr": "green"}, classes="lr-chart")

    def show(self, metrics: list[EpochMetrics], steps: list[StepPoint] | None = None) -> None:
        steps = steps or []

        def points(name: str) -> list[tuple[float, float]]:
            return [(m.epoch, v) for m in metrics if (v := getattr(m, name)) is not None]

        def running(name: str) -> list[tuple[float, float]]:
            return [(p.at, getattr(p, name)) for p in steps]

        self.query_one(".acc-chart", Chart).show({"running": running("train_acc"), "train": points("train_acc"),
                                                  "val": points("val_acc")})
        self.query_one(".loss-chart", Chart).show({"running": running("train_loss"), "train": points("train_loss"),
                                                   "val": points("val_loss")})
        lr = sorted([(p.at, p.lr) for p in steps] + [(m.epoch - 1, m.lr) for m in metrics])  # an epoch's lr: its first step's
        chart = self.query_one(".lr-chart", Chart)
        chart.display = len({v for _, v in lr}) > 1
        if chart.display:
            chart.show({"lr": lr})
