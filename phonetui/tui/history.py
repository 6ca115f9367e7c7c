"""The History tab: the runs folder as a table (each run's sweep or study beside it), the ensembles
exported into it, the picked run's details, and what is done to runs (mark, compare, sort, delete
and its confusions here; load, resume and ensemble export asked of the screen by message). Its keys
work while the focus is in it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from .. import diagnosis
from ..diagnosis import Finding
from ..errors import PhonetuiError, one_line
from ..events import BestSaved, EpochEnd, Progress, RunStarted
from ..fileio import read_text
from .dialogs import Compare, Confirm, Confusions, ExportEnsemble
from .messages import HistoryLoaded, Notice
from .widgets import EpochTable, RunsTable, RunView, findings_text


Group = tuple[str, str]  # ("sweep", its id) or ("study", its name): what trained a run


def _studies(runs_dir: Path) -> tuple[list[str], dict[str, Group]]:
    """The Optuna studies beside the runs, and the study of each run one of their trials trained in
    this runs folder (none without Optuna, or where the storage cannot be read)."""
    try:
        from .. import search
        from ..storage import connect, url_for

        names, groups, here = search.study_names(runs_dir), {}, str(runs_dir.resolve())
        if names:
            storage = connect(url_for(runs_dir, None))
            for name in names:
                for trial in storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False):
                    if trial.user_attrs.get("runs") == here and isinstance(run := trial.user_attrs.get("run"), str):
                        groups[run] = ("study", name)
        return names, groups
    except (ImportError, PhonetuiError):
        return [], {}


ENSEMBLES_SHOWN = 3  # lines under the table; older ensembles are counted


def _ensembles(runs_dir: Path) -> list[str]:
    """A line for each ensemble exported into the runs folder (its `<csv>.json` record), newest first."""
    lines = []
    for path in sorted(runs_dir.glob("ensemble-*.json"), reverse=True):
        try:
            record = json.loads(read_text(path))
            members = [m["run"].split("-", 1)[-1] for m in record["members"]]  # time and preset, as Compare labels them
            acc = record.get("test_acc")
            lines.append(f"{path.stem}: {len(members)} runs ({', '.join(members)}) · {record['decode']}, "
                         f"{record['weights_from']} weights · test acc {'-' if acc is None else format(acc, '.4f')}")
        except (PhonetuiError, ValueError, KeyError, TypeError, AttributeError) as e:
            lines.append(f"{path.stem}: unreadable ({one_line(e)})")
    if len(lines) > ENSEMBLES_SHOWN:
        lines[ENSEMBLES_SHOWN - 1:] = [f"and {len(lines) - ENSEMBLES_SHOWN + 1} older ensembles ({runs_dir}/ensemble-*.json)"]
    return lines


class RunDetails(Vertical):
    """A run picked in History: one line about it, its weakest phones, its curves and epoch table."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.run = None  # the run shown, and its diagnosis (`a` puts its next step in the form)
        self.findings: list[Finding] = []

    def compose(self) -> ComposeResult:
        yield Static("select a run", id="picked-info")
        yield Static(id="picked-findings")
        yield RunView(id="picked-view")

    def show(self, run, empty: str = "select a run", group: Group | None = None) -> None:
        """Show `run` (None: the line `empty`), with the sweep or study that trained it."""
        info, view = self.query_one("#picked-info", Static), self.query_one(RunView)
        found = self.query_one("#picked-findings", Static)
        self.run, self.findings = run, []
        found.display = False
        if run is None or run.state == "damaged":
            info.update(empty if run is None else escape(f"{run.id}: damaged: {run.reason}"))
            view.show([], None)
            return
        t, m = run.config.training, run.config.model
        metrics, steps, note = [], [], ""
        try:
            metrics = run.metrics()
        except PhonetuiError as e:
            note = f" · {e}"
        try:
            steps = run.steps()  # the points inside the epochs (a damaged file loses only these)
        except PhonetuiError as e:
            note += f" · {e}"
        test = f" · test acc {run.test_acc:.4f}" if run.test_acc is not None else ""
        of = f" · {' '.join(group)}" if group else ""
        line = f"{run.id}: {m.summary()} · lr {t.lr:g} · batch {t.batch_size} · {run.state}{test}{of}{note}"
        info.update(escape(line + self._phones_line(run)))
        view.show(metrics, run.status.best_epoch, steps)
        self.findings = diagnosis.of_run(run, metrics, steps)  # (as read above)
        found.update(findings_text(self.findings))
        found.display = bool(self.findings)
        table = view.query_one(EpochTable)  # the pane's height for it may have changed with the findings
        table.call_after_refresh(table.keep_cursor_in_view)

    @staticmethod
    def _phones_line(run) -> str:
        """A second line: the best model's weakest phones and most confused pairs (validation frames)."""
        from .. import diagnostics

        try:
            phones, pairs = diagnostics.read(run)
        except PhonetuiError as e:
            return f"\n{e}"
        scored = sorted((p for p in phones if p.accuracy is not None), key=lambda p: p.accuracy)
        if not scored:
            return ""
        weak = " ".join(f"{p.phone} {p.accuracy:.2f}" for p in scored[:5])
        confused = " ".join(f"{c.true}>{c.predicted} {c.share:.0%}" for c in pairs[:3])
        return f"\nweakest phones: {weak} · confused: {confused}"


class HistoryPane(Vertical):
    """Every run of the runs folder; `busy` is the folder of the run being trained (kept from harm)."""

    DEFAULT_CSS = "#ensembles { height: auto; color: $text-muted; text-wrap: nowrap; text-overflow: ellipsis; }"

    BINDINGS = [
        Binding("space", "mark", "Mark", show=False, tooltip="Mark the selected run for comparison"),
        Binding("f3,l", "load_run", "Load", show=False, tooltip="Load the selected run's config"),
        Binding("f4,c", "compare", "Compare", key_display="F4", tooltip="Compare the marked runs"),
        Binding("f7,b", "sort_best", "Sort", show=False, tooltip="Sort the history by best val acc"),
        Binding("f8,delete", "delete_run", "Delete", show=False, tooltip="Delete the selected run"),
        Binding("v", "confusions", "Confusions", show=False,
                tooltip="The selected run's phones, worst first, and what its best model takes them for"),
        Binding("f10,r", "resume", "Resume", key_display="F10", tooltip="Continue the selected stopped run"),
        Binding("ctrl+e,e", "export_ensemble", "Export ensemble", show=False,
                tooltip="Export the marked runs as one ensemble CSV (their posteriors averaged)"),
    ]

    class LoadConfig(Message):
        def __init__(self, run) -> None:
            super().__init__()
            self.run = run

    class Resume(Message):
        def __init__(self, run) -> None:
            super().__init__()
            self.run = run

    class Loaded(HistoryLoaded):
        """The runs folder read, with what History alone shows: each run's group (run id -> Group)
        and a line for each ensemble exported into the folder."""

        def __init__(self, runs: list, groups: dict[str, Group], ensembles: list[str], **kwargs) -> None:
            super().__init__(runs, **kwargs)
            self.groups, self.ensembles = groups, ensembles

    class Ensemble(Message):
        """Export `runs` as one ensemble, decoded and weighted as `how` says."""

        def __init__(self, runs: list, how: dict[str, str]) -> None:
            super().__init__()
            self.runs, self.how = runs, how

    def __init__(self, runs_dir: Path, **kwargs) -> None:
        super().__init__(**kwargs)
        self.runs_dir = runs_dir
        self.training = None  # a snapshot of the run being trained (from its events), kept from harm
        self.pending_sweeps: dict[str, tuple[int, int]] = {}  # sweep id -> (runs left, runs)
        self.ensemble_choices: dict[str, str] = {}  # the last export's decode and weights
        self.studies: list[str] = []  # the Optuna studies (ctrl+p: each one's leaderboard)

    def compose(self) -> ComposeResult:
        yield RunsTable(id="runs")
        yield Static(id="ensembles")
        yield RunDetails(id="picked")

    @property
    def busy(self) -> Path | None:
        """The folder of the run being trained, if any."""
        return self.training.path if self.training else None

    @property
    def table(self) -> RunsTable:
        return self.query_one(RunsTable)

    def say(self, text: str, kind: str = "info", toast: bool = False) -> None:
        self.post_message(Notice(text, kind, toast))

    @work(thread=True, exclusive=True, exit_on_error=False, group="history")
    def reload(self, follow: str | None = None) -> None:
        """Read the runs folder; `follow`: the run id to put the cursor on."""
        try:
            from .. import runs, sweep

            sweeps = [s for s in sweep.list_sweeps(self.runs_dir) if isinstance(s, sweep.Sweep)]
            left = {s.id: (len(s.pending()), len(s.trials)) for s in sweeps}
            groups: dict[str, Group] = {t.run: ("sweep", s.id) for s in sweeps for t in s.trials if t.run}
            studies, trained = _studies(self.runs_dir)
            self.post_message(self.Loaded(runs.list_runs(self.runs_dir), groups | trained, _ensembles(self.runs_dir),
                                          follow=follow, sweeps={k: v for k, v in left.items() if v[0]}, studies=studies))
        except Exception as e:  # noqa: BLE001
            self.post_message(self.Loaded([], {}, [], error=one_line(e)))

    def on_history_pane_loaded(self, message: Loaded) -> None:
        message.stop()
        picked = self.table.selected()
        self.table.groups = message.groups
        self.table.show(message.runs, message.follow or (picked.id if picked else None))
        ensembles = self.query_one("#ensembles", Static)
        ensembles.update(escape("\n".join(message.ensembles)))
        ensembles.display = bool(message.ensembles)
        if message.error:
            self.say(f"runs folder: {message.error}", "error")
        new = set(message.sweeps) - set(self.pending_sweeps)
        self.pending_sweeps = message.sweeps
        self.studies = message.studies
        for sweep_id in sorted(new):
            if self.busy is None:
                left, total = message.sweeps[sweep_id]
                self.say(f"sweep {sweep_id} has {left} of {total} runs left: ctrl+p, 'Continue sweep' runs them, "
                         "'Drop sweep' forgets them")
        self.show_picked()

    def drop_sweep(self, sweep_id: str) -> None:
        """Forget a pending sweep (its queue; the runs it trained stay)."""
        from .. import sweep

        try:
            queue = sweep.drop(self.runs_dir, sweep_id)
        except PhonetuiError as e:
            self.say(str(e), "error")
            return
        self.say(f"dropped sweep {queue.id}: {len(queue.pending())} runs left untrained; its runs stay", "ok")
        self.reload()

    def follow(self, e, epochs: int, best: float | None) -> None:
        """Keep the training run live from trainer event `e` (with the Training panel's count of its
        epochs and its best val acc so far): its row, and its details while it is the picked run."""
        self.training = getattr(e, "run", None) or self.training
        match e:
            case RunStarted(run=run):
                self.table.update_live(run, run.status.epochs_done + 1, 0.0)
                self.reload(follow=run.id)
            case Progress() if self.training:
                part = round(e.frames / max(e.total, 1), 2)  # whole percents: a cell updated at most 100 times an epoch
                self.table.update_live(self.training, e.epoch, part)
            case EpochEnd(metrics=m) if self.training:
                self._advance(m.epoch, epochs_done=epochs)
            case BestSaved(epoch=epoch) if self.training:
                self._advance(epoch, best_epoch=epoch, best_val_acc=best)

    def _advance(self, epoch: int, **status) -> None:
        """The training run's status as epoch `epoch` ends (its files on disk lag its events): its row,
        and its details (curves, epoch table, best epoch's star) when it is the picked run."""
        self.training = replace(self.training, status=replace(self.training.status, **status))
        self.table.update_live(self.training, epoch, 1.0)
        picked = self.table.selected()
        if picked is not None and picked.id == self.training.id:
            self.show_picked()

    def current(self, run):
        """`run` as it is now: the training run as its events have it; any other read again (a --jobs
        worker or another process may have trained it since History read the folder)."""
        if self.training is not None and run.id == self.training.id:
            return self.training
        from .. import runs

        try:
            return runs.open_run(run.path)
        except PhonetuiError:
            return run

    def ended(self, follow: str | None) -> None:
        """The job ended: its run is no longer busy; select `follow` (its last run) once reloaded."""
        self.training = None
        self.table.live = None
        if follow is not None:
            self.reload(follow=follow)

    @on(DataTable.RowHighlighted, "#runs")
    def show_picked(self) -> None:
        run = self.table.selected()
        self.query_one(RunDetails).show(run, "select a run" if self.table.row_count else "no runs yet",
                                        self.table.groups.get(run.id) if run else None)

    @on(DataTable.HeaderSelected, "#runs")
    def header_clicked(self, event: DataTable.HeaderSelected) -> None:
        if event.column_key.value != "mark":
            self.table.sort_by(event.column_key.value)
            self.say(self.table.sort_line())

    def action_sort_best(self) -> None:
        table = self.table
        table.sort_by("best", True) if table.sort_column != "best" else table.sort_by("id", True)
        self.say(table.sort_line())

    def picked(self, verb: str, damaged_ok: bool = False):
        """The selected run, or None with a line saying why it cannot be `verb`ed."""
        run = self.table.selected()
        if run is None:
            self.say(f"no run selected: pick one in History (F2) to {verb}", "error")
        elif run.state == "damaged" and not damaged_ok:
            self.say(f"cannot {verb}: {run.id} is damaged: {run.reason}", "error")
            return None
        return run

    def marked(self) -> list:
        return [r for i in sorted(self.table.marked) if (r := self.table.runs.get(i)) is not None and r.state != "damaged"]

    def action_load_run(self) -> None:
        if run := self.picked("load its config"):
            self.post_message(self.LoadConfig(run))

    def action_resume(self) -> None:
        run = self.table.selected()
        if run is None:
            self.say("select a stopped or interrupted run in History (F2), then F10 resumes it", "error")
        elif run.state not in ("stopped", "interrupted", "failed"):
            self.say(f"{run.id} is {run.state}: only a stopped or interrupted run can be resumed", "error")
        else:
            self.post_message(self.Resume(run))

    def action_mark(self) -> None:
        if run := self.table.toggle_mark():
            n = len(self.table.marked)
            self.say(f"{'marked' if run.id in self.table.marked else 'unmarked'} {run.id} · "
                     f"{n} marked" + (" · F4 compares them" if n >= 2 else ""))

    def action_compare(self) -> None:
        chosen = [self.current(r) for r in self.marked()]
        if len(chosen) < 2:
            self.say("mark at least two runs in History with space, then F4 compares them", "error")
            return
        metrics = {}
        for run in chosen:
            try:
                metrics[run.id] = run.metrics()
            except PhonetuiError:
                metrics[run.id] = []
        self.app.push_screen(Compare(chosen, metrics))

    def action_confusions(self) -> None:
        """The picked run's phones on the validation frames, worst first, with what they are taken for."""
        run = self.picked("show its confusions")
        if run is None:
            return
        from .. import diagnostics

        try:
            phones, pairs = diagnostics.read(run)
        except PhonetuiError as e:
            self.say(str(e), "error")
            return
        if not any(p.accuracy is not None for p in phones):
            self.say(f"{run.id} has no confusions yet: they come with a best model scored on the validation split")
            return
        self.app.push_screen(Confusions(run.id, self.current(run).status.best_epoch, phones, pairs))

    def action_export_ensemble(self) -> None:
        chosen = self.marked()
        if len(chosen) < 2:
            self.say("mark two or more runs in History (space), then e exports them as one ensemble", "error")
        elif self.busy is not None and any(r.path == self.busy for r in chosen):
            self.say("a marked run is still training: stop it (F6) or wait, then export", "error")
        else:
            def answer(how: dict[str, str] | None) -> None:
                if how is not None:
                    self.ensemble_choices = how
                    self.post_message(self.Ensemble(chosen, how))

            self.app.push_screen(ExportEnsemble([r.id for r in chosen], self.ensemble_choices), answer)

    def action_delete_run(self) -> None:
        run = self.picked("delete it", damaged_ok=True)
        if run is None:
            return
        if run.path == self.busy:
            self.say("this run is still training: stop it (F6) first", "error")
            return

        def answer(yes: bool | None) -> None:
            if yes:
                from .. import runs

                try:
                    runs.delete(run)
                except PhonetuiError as e:
                    self.say(str(e), "error")
                    return
                self.say(f"deleted {run.path}", "ok", toast=True)
                self.reload()

        self.app.push_screen(Confirm(f"Delete run {run.id} and all its files (best model, CSV)?", "Delete"), answer)
