"""Modal screens: a yes/no question, the help screen, the comparison of several runs, a run's
confusions and the choices of an ensemble's export."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Label, Select, Static

from ..runs import differences
from .. import diagnostics
from .charts import Chart, colors_for, legend

if TYPE_CHECKING:
    from ..diagnostics import Confusion, PhoneScore
    from ..runs import Run


class Confirm(ModalScreen[bool]):
    """A question with a yes and a no button (no has the focus; arrow keys move between them)."""

    BINDINGS = [Binding("escape", "dismiss(False)", "Cancel"),
                Binding("left,up", "app.focus_previous", show=False),
                Binding("right,down", "app.focus_next", show=False)]

    def __init__(self, question: str, yes: str) -> None:
        super().__init__()
        self.question, self.yes = question, yes

    def compose(self) -> ComposeResult:
        with Grid(id="confirm-dialog"):
            yield Label(self.question, id="confirm-question")
            yield Button(self.yes, variant="error", id="confirm-yes")
            yield Button("Cancel", variant="primary", id="confirm-no")

    def on_mount(self) -> None:
        self.query_one("#confirm-no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-yes")


ENSEMBLE_CHOICES = {"decode": (("argmax: each frame's best class", "argmax"),
                               ("viterbi: along each utterance (tuned on validation)", "viterbi")),
                    "weights": (("equal", "equal"), ("chosen on the validation split", "val"))}


class ExportEnsemble(ModalScreen["dict[str, str] | None"]):
    """How to export the marked runs as one CSV: the decode and the members' weights (both tuned, if
    asked, on the validation split the runs share). Export has the focus, so Enter exports; Tab
    reaches the lists; Escape cancels."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, runs: list[str], chosen: dict[str, str]) -> None:
        super().__init__()
        self.runs, self.chosen = runs, chosen

    def compose(self) -> ComposeResult:
        with Vertical(id="ensemble-dialog"):
            yield Label(f"Export an ensemble of {len(self.runs)} runs: {', '.join(self.runs)}", id="ensemble-title")
            for key, options in ENSEMBLE_CHOICES.items():
                with Horizontal(classes="field"):
                    yield Label(key)
                    yield Select(options, value=self.chosen.get(key, options[0][1]), allow_blank=False,
                                 compact=True, id=f"ensemble-{key}")
            with Horizontal(id="ensemble-buttons"):
                yield Button("Export", variant="primary", id="ensemble-export")
                yield Button("Cancel", id="ensemble-cancel")

    def on_mount(self) -> None:
        self.query_one("#ensemble-export", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ensemble-export":
            self.dismiss({key: str(self.query_one(f"#ensemble-{key}", Select).value) for key in ENSEMBLE_CHOICES})
        else:
            self.dismiss(None)


HELP = """\
# phonetui

Pick a preset (Enter), edit its values, **F5** trains in the background while the Training tab
draws the curves; the best model is saved; **F9** predicts the test set and writes the CSV.

| key | action |
|---|---|
{keys}

**Training**: the running train loss and accuracy inside the epoch (grey in the charts), the
epoch table with the best epoch starred; where the table is wide, **gain ±95%** gives each new
best model's val acc gain over the last one in points, with half its 95% interval (bootstrap over
the validation utterances): ✓ the gain is beyond noise, ~ it is within noise. Under the progress,
the diagnosis of the curves so far; **a** puts its next step in the form (History: of the selected
run), and nothing starts until F5.

Function keys work wherever the focus is; letters only when no text field has the focus.
**ctrl+p** opens the command palette: presets, actions and runs by name.

**History**: the runs folder, live while a run trains (its status: the epoch in progress and
that epoch's share done), each run's group (the sweep or Optuna study that trained it) and
the ensembles exported into it. Click a header to sort by it (again to reverse). **space** marks
runs; **F4** compares the marked runs (val curves and the settings that differ). **F3** loads a
run's config into the form, **F8** deletes a run (after asking), **v** shows its phones worst
first and what its best model takes them for.

**Log**: every message of this session, newest last.

**Sweeps and searches from the form.** Type several values into a field, separated by commas
(lr `0.001,0.003`, batch size `128,256`): **F5** trains every combination, one run after another
(a sweep), then ranks them. Type a range `LO:HI` (lr `1e-4:1e-2`) and **F5** starts an Optuna
search instead: each trial picks a value in the range (log-uniform for lr, whole numbers for
integer fields), comma lists become its choices, and poor trials are pruned. A search shows two
more fields: its **trials**, and its **jobs** (trials at once, each in its own process).
"""


class Help(ModalScreen[None]):
    """Every key and what it does (built from the bindings, so it never goes stale)."""

    BINDINGS = [Binding("escape,f1,question_mark,q", "dismiss", "Close")]

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        from textual.widgets import Markdown  # imported on first use: it pulls in a Markdown parser

        rows = "\n".join(f"| `{key}` | {what} |" for key, what in self.keys)
        with VerticalScroll(id="help-dialog"):
            yield Markdown(HELP.format(keys=rows))
            yield Label("Escape closes this screen · Down, PageDown, End scroll", id="help-close")

    def on_mount(self) -> None:
        self.query_one("#help-dialog").focus()  # its keys scroll it (Down, PageDown, Home, End)


class Compare(ModalScreen[None]):
    """Several runs side by side: their val accuracy curves overlaid, and the settings that differ."""

    BINDINGS = [Binding("escape,f4,q", "dismiss", "Close")]

    def __init__(self, runs: list[Run], metrics: dict[str, list]) -> None:
        super().__init__()
        self.runs, self.metrics = runs, metrics

    def compose(self) -> ComposeResult:
        with Vertical(id="compare-dialog"):
            yield Label(f"comparing {len(self.runs)} runs · Escape closes", id="compare-title")
            yield Static(legend(self.colors), id="compare-legend")  # above the curves, not over them
            yield Chart("val accuracy", self.colors, id="compare-chart")
            yield DataTable(id="compare-table", cursor_type="row", zebra_stripes=True)

    @property
    def colors(self) -> dict[str, str]:
        return colors_for([_label(r) for r in self.runs])

    def on_mount(self) -> None:
        self.query_one(Chart).show({_label(r): [(m.epoch, m.val_acc) for m in self.metrics[r.id] if m.val_acc is not None]
                                    for r in self.runs})
        table = self.query_one(DataTable)
        table.add_column("")
        for r in self.runs:
            table.add_column(_label(r))
        vs = diagnostics.versus_best(self.runs)
        rows = {"best val acc": [_acc(r.status.best_val_acc) for r in self.runs],
                "vs best: val acc, 95%": [vs[r.id] for r in self.runs],
                "test acc": [_acc(r.test_acc) for r in self.runs],
                "epochs": [f"{r.status.epochs_done}/{r.config.training.epochs}" for r in self.runs]}
        rows |= {k: ["-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v) for v in values]
                 for k, values in differences(self.runs).items()}
        for key, values in rows.items():
            table.add_row(Text(key, "bold"), *values, key=key)


class Confusions(ModalScreen[None]):
    """A run's best model on the validation frames: every phone, worst first, with its accuracy and
    what it is taken for (among the most confused pairs that diagnostics keeps)."""

    DEFAULT_CSS = ("Confusions { align: center middle; } Confusions #compare-title { width: 100%; } "
                   "#confusions-table { height: 1fr; }")
    BINDINGS = [Binding("escape,v,q", "dismiss", "Close")]

    def __init__(self, run_id: str, best_epoch: int | None, phones: list[PhoneScore], pairs: list[Confusion]) -> None:
        super().__init__()
        self.run_id, self.best_epoch, self.phones, self.pairs = run_id, best_epoch, phones, pairs

    def compose(self) -> ComposeResult:
        model = "best model" if self.best_epoch is None else f"best model (epoch {self.best_epoch})"
        with Vertical(id="compare-dialog"):
            yield Label(f"{self.run_id}: its {model} on the validation frames, worst phones first · Escape closes",
                        id="compare-title")
            yield DataTable(id="confusions-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("phone", "frames", "accuracy", "taken for (share of its frames)")
        for p in sorted((p for p in self.phones if p.accuracy is not None), key=lambda p: p.accuracy):
            taken = ", ".join(f"{c.predicted} {c.share:.0%}" for c in self.pairs if c.true == p.phone)
            table.add_row(Text(p.phone, "bold"), f"{p.frames:,}", f"{p.accuracy:.4f}", taken or "-", key=p.phone)


class StudyBoard(ModalScreen[None]):
    """An Optuna study's leaderboard: every trial, from every worker and machine, with where it ran."""

    BINDINGS = [Binding("escape,q", "dismiss", "Close")]

    def __init__(self, name: str, rows: list[dict[str, Any]]) -> None:
        super().__init__()
        self.study, self.rows = name, rows

    def compose(self) -> ComposeResult:
        with Vertical(id="compare-dialog"):
            yield Label(f"Optuna study {self.study}: {len(self.rows)} trials, best first · Escape closes",
                        id="compare-title")
            yield DataTable(id="study-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        from ..search import board_rows

        table = self.query_one(DataTable)
        keys, rows = board_rows(self.rows)
        vs = diagnostics.versus_best_at([path for _, path in rows])
        table.add_columns("rank", "trial", "state", *keys, "best val acc", "vs best: val acc, 95%", "host", "run")
        for cells, run in rows:
            table.add_row(*cells[:-1], vs.get(run, "-"), cells[-1], str(run or "-"))


def _label(run: Run) -> str:
    """A legend name: the run id, date included (runs of other days can share a time)."""
    return run.id


def _acc(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"
