"""Line charts of training curves (plotext underneath): one run's accuracy and loss, or several runs' val accuracy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual_plotext import PlotextPlot

if TYPE_CHECKING:
    from ..runs import EpochMetrics

Series = dict[str, list[tuple[int, float]]]  # legend label -> (epoch, value) points


class Chart(PlotextPlot):
    """One metric over epochs: a line per series with its legend, epoch ticks on x, the y axis
    fitted to the values (so a 0.840 -> 0.830 change looks like the small change it is). With
    `colors` and under SMALL rows, the legend moves into the title and the x label goes, so that
    the few rows there are show the curves."""

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
        small = bool(self.series_colors) and self.size.height < self.SMALL
        plt = self.plt
        plt.clear_figure()
        plt.title(f"{self.title}: " + ", ".join(f"{k} {c}" for k, c in self.series_colors.items()) if small else self.title)
        points = [p for line in series.values() for p in line]
        if points:
            epochs = sorted({e for e, _ in points})
            lo, hi = min(v for _, v in points), max(v for _, v in points)
            pad = max((hi - lo) * 0.08, abs(hi) * 0.002, 1e-3)
            plt.ylim(lo - pad, hi + pad)
            plt.xlim(epochs[0] - 0.2, epochs[-1] + 0.2)
            step = max(1, round(len(epochs) / 8))
            plt.xticks(epochs[::step])
            for label, line in series.items():
                if line:
                    xs, ys = zip(*line)
                    plt.plot(xs, ys, label=None if small else label, marker="braille", color=self.series_colors.get(label))
        if not small:
            plt.xlabel("epoch")
        self.refresh()


class RunCharts(Horizontal):
    """A run's train/val accuracy and loss as two charts side by side."""

    def compose(self) -> ComposeResult:
        colors = {"train": "blue", "val": "orange"}
        yield Chart("accuracy", colors, classes="acc-chart")
        yield Chart("loss", colors, classes="loss-chart")

    def show(self, metrics: list[EpochMetrics]) -> None:
        def points(name: str) -> list[tuple[int, float]]:
            return [(m.epoch, v) for m in metrics if (v := getattr(m, name)) is not None]

        self.query_one(".acc-chart", Chart).show({"train": points("train_acc"), "val": points("val_acc")})
        self.query_one(".loss-chart", Chart).show({"train": points("train_loss"), "val": points("val_loss")})
