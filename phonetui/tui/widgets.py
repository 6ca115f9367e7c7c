"""Widgets: the preset list, a run's curves and epoch table, the runs table, the quit dialog."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Label, OptionList, Sparkline
from textual.widgets.option_list import Option

from ..config import RunConfig
from ..runs import DamagedRun

if TYPE_CHECKING:
    from ..runs import EpochMetrics, Run


class PresetList(OptionList):
    """Every preset: name, parameter count and description; selecting one fills the form."""

    def show(self, presets: dict[str, RunConfig], current: str) -> None:
        self.clear_options()
        for name, cfg in sorted(presets.items()):
            head = Text.assemble((name, "bold"), f"  {cfg.model.param_count():,} params")
            description = Text(cfg.description or "-", "dim")
            self.add_option(Option(Text("\n").join([head, description]), id=name))
        if current in presets:
            self.highlighted = sorted(presets).index(current)


class Curve(Horizontal):
    """A Sparkline with its name, latest and best value."""

    def __init__(self, name: str, higher_is_better: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.title, self.higher_is_better = name, higher_is_better

    def compose(self) -> ComposeResult:
        yield Label(self.title, classes="curve-name")
        yield Sparkline([], summary_function=max if self.higher_is_better else min)
        yield Label("", classes="curve-value")

    def show(self, values: list[float]) -> None:
        self.query_one(Sparkline).data = values
        best = (max if self.higher_is_better else min)(values, default=None)
        text = "" if best is None else f"{values[-1]:.4f} best {best:.4f}"
        self.query_one(".curve-value", Label).update(text)


COLUMNS = ("epoch", "train acc", "train loss", "val acc", "val loss", "lr", "s")


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


class RunView(Vertical):
    """One run's curves (train/val accuracy and loss) and its epoch table, best epoch marked."""

    def compose(self) -> ComposeResult:
        yield Curve("train acc", True, classes="train-acc")
        yield Curve("val acc", True, classes="val-acc")
        yield Curve("train loss", False, classes="train-loss")
        yield Curve("val loss", False, classes="val-loss")
        table = DataTable(cursor_type="row", zebra_stripes=True)
        table.add_columns(*COLUMNS)
        yield table

    def show(self, metrics: list[EpochMetrics], best_epoch: int | None) -> None:
        with self.app.batch_update():
            self.query_one(".train-acc", Curve).show([m.train_acc for m in metrics])
            self.query_one(".val-acc", Curve).show([m.val_acc for m in metrics if m.val_acc is not None])
            self.query_one(".train-loss", Curve).show([m.train_loss for m in metrics])
            self.query_one(".val-loss", Curve).show([m.val_loss for m in metrics if m.val_loss is not None])
            table = self.query_one(DataTable)
            table.clear()
            for m in metrics:
                best = m.epoch == best_epoch
                cells = [f"{m.epoch}{' *' if best else '  '}", _num(m.train_acc, ".4f"), _num(m.train_loss, ".4f"),
                         _num(m.val_acc, ".4f"), _num(m.val_loss, ".4f"), _num(m.lr, ".2g"), _num(m.seconds, ".1f")]
                table.add_row(*(Text(c, "bold green" if best else "", justify="right") for c in cells))
            if metrics:
                table.move_cursor(row=len(metrics) - 1)


def _best(run: Run | DamagedRun) -> float | None:
    return None if isinstance(run, DamagedRun) else run.status.best_val_acc


class RunsTable(DataTable):
    """The runs folder, newest first or by best validation accuracy."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.by_best = False
        self.runs: dict[str, Run | DamagedRun] = {}

    def on_mount(self) -> None:
        for key, label in (("id", "id"), ("preset", "preset"), ("best", "best val acc"), ("status", "status"),
                           ("lr", "lr"), ("batch", "batch"), ("epochs", "epochs"), ("date", "date")):
            self.add_column(label, key=key)

    def show(self, runs: list[Run | DamagedRun], keep: str | None = None) -> None:
        """Fill the table (sorted as chosen), keeping the cursor on run id `keep` when it is there."""
        self.runs = {r.id: r for r in runs}
        if self.by_best:
            runs = sorted(runs, key=lambda r: _best(r) or -1.0, reverse=True)
        self.clear()
        for r in runs:
            if isinstance(r, DamagedRun):
                self.add_row(r.id, "-", "-", r.state, "-", "-", "-", "-", key=r.id)
                continue
            t = r.config.training
            self.add_row(r.id, r.config.preset, _num(_best(r), ".4f"), r.state, f"{t.lr:g}", str(t.batch_size),
                         f"{r.status.epochs_done}/{t.epochs}", str(r.record.get("started", ""))[:16], key=r.id)
        if keep in self.runs:
            self.move_cursor(row=self.get_row_index(keep))

    def selected(self) -> Run | DamagedRun | None:
        if not self.row_count:
            return None
        return self.runs.get(self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value)


class QuitScreen(ModalScreen[bool]):
    """Asks before quitting while a run is active."""

    BINDINGS = [("escape", "dismiss(False)", "Cancel")]

    def compose(self) -> ComposeResult:
        with Grid(id="quit-dialog"):
            yield Label("A run is active. Stop it (the best model is kept) and quit?", id="quit-question")
            yield Button("Stop and quit", variant="error", id="quit-yes")
            yield Button("Cancel", variant="primary", id="quit-no")

    def on_mount(self) -> None:
        self.query_one("#quit-no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "quit-yes")
