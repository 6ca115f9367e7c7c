"""Widgets: a run's charts and epoch table, and the runs table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, RichLog

from ..runs import DamagedRun
from .charts import RunCharts

if TYPE_CHECKING:
    from ..diagnosis import Finding
    from ..runs import EpochMetrics, Run, StepPoint


def findings_text(found: list[Finding]) -> str:
    """Markup: a finding a line, its id in bold, and the key that puts its next step in the form."""
    lines = [f"[b]{f.id}[/b]: {escape(f.evidence)}" for f in found]
    if change := next((f.change for f in found if f.change), None):
        lines.append("[b]a[/b] puts the next step in the form: " + escape(change_text(change)))
    return "\n".join(lines)


def change_text(change: dict) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v:.3g}" if isinstance(v, float) else f"{k.replace('_', ' ')} {v}"
                     for k, v in change.items())


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


class EpochTable(DataTable):
    """A run's epochs, its cursor (the last epoch, unless moved) kept in view. DataTable scrolls to a
    moved cursor once, after the next refresh; when a scrollbar appears later (its columns come out
    wider than the pane) or the pane is resized, the viewport shrinks under the cursor, so this
    scrolls to it again."""

    def __init__(self) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True)

    def watch_show_horizontal_scrollbar(self) -> None:
        self.call_after_refresh(self.keep_cursor_in_view)

    def on_resize(self) -> None:
        self.call_after_refresh(self.keep_cursor_in_view)

    def keep_cursor_in_view(self, tries: int = 20) -> None:
        """Scroll the cursor's row into view, once the table knows its new height: DataTable sizes
        its rows when idle and its scroll range follows a layout later; a scroll before then is
        clamped to the old range (so it waits, a few refreshes at most)."""
        if not self.row_count:
            return
        settled = self.virtual_size.height >= self.row_count + self.show_header and \
            self.max_scroll_y >= self.virtual_size.height - self.size.height  # (its scroll range follows a layout later)
        if not settled and tries:
            self.call_after_refresh(self.keep_cursor_in_view, tries - 1)
            return
        self.move_cursor(row=self.cursor_row, scroll=True)


def _saved(m: EpochMetrics, last_best: float | None) -> str:
    """An epoch that saved a new best model: its val acc gain over the last best, in points, +- half
    its 95% interval, ✓ where the interval leaves out 0 (beyond noise), ~ where not ('+0.63±0.29✓')."""
    if m.gain_lo is None or m.gain_hi is None or m.val_acc is None or last_best is None:
        return ""
    mark = "✓" if m.gain_lo > 0 else "~"
    return f"{(m.val_acc - last_best) * 100:+.2f}±{(m.gain_hi - m.gain_lo) * 50:.2f}{mark}"


class RunView(Vertical):
    """One run's curves (train/val accuracy and loss charts) and its epoch table, best epoch marked.
    Below 80 columns the table's headers shorten (the form beside it at 120 columns leaves the pane
    72); below 62 its columns close up and the gain column goes (the form beside it at 80 columns
    leaves 43), so that every column stays in view."""

    COLUMNS = {"epoch": "ep", "train acc": "acc", "train loss": "loss", "val acc": "v acc", "val loss": "v loss",
               "lr": "lr", "s": "s"}  # label -> short label
    SAVED = "gain ±95%"  # the wide table: a new best model's gain in points, ✓ beyond noise, ~ within it

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metrics: list[EpochMetrics] = []
        self.steps: list[StepPoint] = []
        self.best_epoch: int | None = None
        self.compact: bool | None = None  # closed-up columns, no gain column
        self.short: bool | None = None  # short headers

    def compose(self) -> ComposeResult:
        yield RunCharts()
        yield EpochTable()

    def on_resize(self) -> None:
        compact, short = self.size.width < 62, self.size.width < 80
        if (compact, short) != (self.compact, self.short):
            self.compact, self.short = compact, short
            table = self.query_one(DataTable)
            table.clear(columns=True)
            table.cell_padding = 0 if compact else 1  # compact: one space between columns (a cell's own), not two
            table.add_columns(*((" " if compact else "") + (brief if short else label)
                                for label, brief in self.COLUMNS.items()), *([] if compact else [self.SAVED]))
            self.show(self.metrics, self.best_epoch, self.steps)

    def show(self, metrics: list[EpochMetrics], best_epoch: int | None, steps: list[StepPoint] | None = None) -> None:
        """The epochs (and the points inside them, where the run has them) with the best epoch marked."""
        self.metrics, self.best_epoch, self.steps = list(metrics), best_epoch, list(steps or [])
        with self.app.batch_update():
            self.query_one(RunCharts).show(metrics, self.steps)
            table = self.query_one(DataTable)
            table.clear()
            if not table.columns:
                return
            last_best: float | None = None
            for m in metrics:
                best = m.epoch == best_epoch
                cells = [f"{m.epoch}{'*' if best else ' '}", _num(m.train_acc, ".4f"), _num(m.train_loss, ".4f"),
                         _num(m.val_acc, ".4f"), _num(m.val_loss, ".4f"), _num(m.lr, ".2g"),
                         _num(m.seconds, ".0f" if m.seconds >= 100 or self.compact else ".1f")]
                if not self.compact:
                    cells.append(_saved(m, last_best))
                if m.val_acc is not None and (last_best is None or m.val_acc > last_best):
                    last_best = m.val_acc
                table.add_row(*(Text((" " if self.compact else "") + c, "bold green" if best else "", justify="right")
                                for c in cells))
            if metrics:
                table.move_cursor(row=len(metrics) - 1)
                table.call_after_refresh(table.keep_cursor_in_view)


def _sort_key(run: Run | DamagedRun, column: str, group: str) -> Any:
    if isinstance(run, DamagedRun):
        return {"id": run.id, "preset": "", "best": -2.0, "test": -2.0, "status": run.state, "lr": 0.0, "batch": 0,
                "epochs": -1, "group": group}.get(column, run.id)
    s, t = run.status, run.config.training
    best, test = s.best_val_acc, run.test_acc
    return {"id": run.id, "preset": run.config.preset, "best": -1.0 if best is None else best,
            "test": -1.0 if test is None else test, "status": run.state, "lr": t.lr, "batch": t.batch_size,
            "epochs": s.epochs_done, "group": group}.get(column, run.id)


class RunsTable(DataTable):
    """The runs folder: sorted by any column (newest first by default), marked runs for comparison,
    each run's group (the sweep or Optuna study that trained it), and the training run updated live
    from its events. Below 90 columns it drops the preset column (a run's id ends with it), the group
    column (the picked run's details name it) and the mark column (a mark prefixes the id), and
    shortens its headers, so that every column stays in view."""

    HEADERS = {"mark": " ", "id": "id", "preset": "preset", "status": "status", "best": "best val",
               "test": "test acc", "epochs": "epochs", "lr": "lr", "batch": "batch", "group": "group"}
    COMPACT = {"id": "id", "status": "status", "best": "val", "test": "test", "epochs": "ep", "lr": "lr",
               "batch": "bs"}
    TEXT = ("preset", "status", "group")  # their order in words: A to Z
    GROUP_WIDTH = 12  # a longer group is cut, with an ellipsis (the picked run's details name it whole)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.sort_column, self.descending = "id", True
        self.runs: dict[str, Run | DamagedRun] = {}
        self.groups: dict[str, tuple[str, str]] = {}  # run id -> ("sweep", its id) or ("study", its name)
        self.marked: set[str] = set()
        self.live: tuple[Run, int, float] | None = None  # the training run as its events have it, the epoch
        # in progress and its share done
        self.compact: bool | None = None

    @property
    def headers(self) -> dict[str, str]:
        return self.COMPACT if self.compact else self.HEADERS

    def on_mount(self) -> None:
        self._columns(self.app.size.width < 92)  # its width once shown (the tabs' padding aside)

    def on_resize(self) -> None:
        if self.size.width:
            self._columns(self.size.width < 90)

    def _columns(self, compact: bool) -> None:
        if compact != self.compact:
            self.compact = compact
            self.clear(columns=True)
            for key, label in self.headers.items():
                # room for the sort arrow: a column is as wide as its first label (the marks are not sorted)
                self.add_column(label + "  " * (key != "mark"), key=key)
            picked = self.selected()
            self.show(list(self.runs.values()), picked.id if picked else None)

    def sort_line(self) -> str:
        """The order in words, for the status line."""
        if self.sort_column == "id":
            return "history sorted newest first" if self.descending else "history sorted oldest first"
        label = {"best": "best val acc", "test": "test acc", "batch": "batch size"}.get(self.sort_column,
                                                                                   self.HEADERS[self.sort_column])
        order = "highest first" if self.descending else "lowest first"
        if self.sort_column in self.TEXT:
            order = "Z to A" if self.descending else "A to Z"
        return f"history sorted by {label}, {order}"

    def sort_by(self, column: str, descending: bool | None = None) -> None:
        """Sort by `column`; the same column again reverses the direction unless `descending` is given."""
        if descending is None:
            descending = not self.descending if column == self.sort_column else column not in ("preset", "group")
        self.sort_column, self.descending = column, descending
        picked = self.selected()
        self.show(list(self.runs.values()), picked.id if picked else None)

    def show(self, runs: list[Run | DamagedRun], keep: str | None = None) -> None:
        """Fill the table (sorted as chosen), keeping the cursor on run id `keep` when it is there; the
        training run as its events have it (the folder read may be older than its last event)."""
        live = self.live[0] if self.live else None
        self.runs = {r.id: live if live is not None and r.id == live.id else r for r in runs}
        self.marked &= set(self.runs)
        ordered = sorted(self.runs.values(), key=lambda r: _sort_key(r, self.sort_column, self.groups.get(r.id, ("", ""))[1]),
                         reverse=self.descending)
        with self.app.batch_update():
            self.clear()
            for key, label in self.headers.items():
                arrow = (" ▼" if self.descending else " ▲") if key == self.sort_column else "  " * (key != "mark")
                self.columns[key].label = Text(label + arrow)
            for r in ordered:
                self.add_row(*self._cells(r), key=r.id)
            if keep in self.runs:
                self.move_cursor(row=self.get_row_index(keep))

    def _cells(self, r: Run | DamagedRun) -> list[str]:
        mark = "✓" if r.id in self.marked else " "
        kind, group = self.groups.get(r.id, ("", "-"))
        group = group.split("-", 1)[-1] if kind == "sweep" else group  # a sweep's id without its date
        cells = {"mark": mark, "id": r.id, "status": r.state,
                 "group": group if len(group) <= self.GROUP_WIDTH else group[:self.GROUP_WIDTH - 1] + "…"}
        if not isinstance(r, DamagedRun):
            t, s = r.config.training, r.status
            cells |= {"preset": r.config.preset, "best": _num(s.best_val_acc, ".4f"), "test": _num(r.test_acc, ".4f"),
                      "epochs": f"{s.epochs_done}/{t.epochs}", "lr": f"{t.lr:.3g}", "batch": str(t.batch_size)}
            if self.live and self.live[0].id == r.id:
                _, epoch, part = self.live  # the epoch in progress and its share done (not the run's share)
                cells["status"] = f"epoch {epoch} {part:.0%}"
        if self.compact:
            cells["id"] = mark + cells["id"]
        return [cells.get(key, "-") for key in self.headers]

    def update_live(self, run: Run, epoch: int, part: float) -> None:
        """Show the training run as its events have it (`run`: its epochs done, best val acc) and its
        epoch in progress (`epoch`, its share `part` done), without reading the runs folder again."""
        if self.live is not None and self.live[0] is run and self.live[1:] == (epoch, part):
            return
        self.live = (run, epoch, part)
        if run.id in self.runs:
            self.runs[run.id] = run
            self._refresh(run, update_width=True)

    def toggle_mark(self) -> Run | DamagedRun | None:
        run = self.selected()
        if run is not None:
            self.marked ^= {run.id}
            self._refresh(run)
        return run

    def _refresh(self, run: Run | DamagedRun, update_width: bool = False) -> None:
        """Redraw one run's row in place."""
        for key, cell in zip(self.headers, self._cells(run)):
            self.update_cell(run.id, key, cell, update_width=update_width)

    def selected(self) -> Run | DamagedRun | None:
        if not self.row_count:
            return None
        return self.runs.get(self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value)


class LogView(RichLog):
    """The Log tab, wrapped at its own width whenever it shows. RichLog wraps a line once, at the width
    it has when the line arrives: hidden behind another tab (width 0) that was its min_width, 20
    columns, and while the tab comes back a passing width. So the lines are kept as written, and
    drawn again at the log's width each time that changes."""

    KEEP = 5000  # the latest lines kept

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.entries: list[str] = []
        self.drawn_at = 0  # the width the lines were last drawn at (0: not drawn since hidden)

    def add(self, line: str) -> None:
        self.entries = self.entries[-self.KEEP + 1:] + [line]
        if self.size.width and self.size.width == self.drawn_at:
            self._line(line)
        else:  # hidden, or resized since the last drawing: draw them all at the width it shows at
            self.drawn_at = 0
            self._redraw_soon()

    def _line(self, line: str) -> None:
        """One line wrapped at the width left beside a vertical scrollbar (shown or not: it comes in
        once the lines fill the tab, and lines drawn wider would lose their end to it)."""
        self.write(line, width=max(self.size.width - self.styles.scrollbar_size_vertical, 10))

    def on_resize(self, event) -> None:
        super().on_resize(event)  # RichLog's: the first known size
        if event.size.width != self.drawn_at:
            self._redraw_soon()

    def on_show(self) -> None:
        self._redraw_soon()

    def _redraw_soon(self) -> None:
        self.call_after_refresh(self._redraw)

    def _redraw(self) -> None:
        if not self.size.width or self.size.width == self.drawn_at:
            return  # hidden (it is drawn when it shows), or drawn at this width already
        self.drawn_at = self.size.width
        self.clear()
        for line in self.entries:
            self._line(line)
