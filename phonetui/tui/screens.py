"""The main screen: the data line; presets and form on the left; Training, History and Log tabs.

It composes the panes, holds the global keys and routes what they post. The panes do the work:
SetupPane (setup) the presets and form, the Session (session) runs the jobs (jobs), TrainingPanel
(training) and HistoryPane (history) follow the trainer's events themselves, loading and export
run in thread workers (loading, export) and answer with messages. This screen keeps the status
line and the Log. Heavy modules (torch, the trainer, prediction) load inside those workers.
"""

from __future__ import annotations

import time
from functools import partial

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Static, TabbedContent, TabPane

from ..errors import PhonetuiError, one_line
from . import export, jobs, loading
from .form import LABELS, ConfigForm, field_text
from .history import HistoryPane, RunDetails
from .loading import DataLine
from .messages import (DataLoaded, JobLog, Notice, Predicted, PredictFailed, Reported, TorchReady, TrainerEvent,
                       TrainingEnded)
from .session import Session
from .settings import Settings
from .setup import SetupPane
from .status import event_line
from .training import TrainingPanel
from .widgets import LogView, change_text


class MainScreen(Screen):
    """Choose a preset, edit it, train in a thread, watch, compare runs, export the CSV."""

    BINDINGS = [  # the footer shows the function keys of the main actions; the help (F1) every key
        Binding("f5,s", "start", "Start", key_display="F5", tooltip="Train the form's config in the background"),
        Binding("f6,x", "stop", "Stop", key_display="F6", tooltip="Stop the run; its best model is kept"),
        Binding("f9,p", "predict", "Export", key_display="F9", tooltip="Predict the test set, write the CSV"),
        Binding("f2,t", "switch_tab", "Tab", key_display="F2", tooltip="Training / History / Log", show=False),  # the tabs show
        Binding("a", "apply_finding", "Next step into the form", show=False,
                tooltip="Put the diagnosis' next step (of the run trained, or History's selected run) in the form"),
    ]

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings
        self.runs_dir = settings.runs
        self.queued = False  # Start was pressed before the data and torch had loaded: it starts when they have
        self.refused: str | None = None  # the field the status line says Start was refused for
        self.session = Session(None, settings.tensorboard)  # its messages go to the Training panel first (on_mount)

    def compose(self) -> ComposeResult:
        yield DataLine(id="data-line")
        with Horizontal(id="body"):
            yield SetupPane(id="left")
            with TabbedContent(id="tabs"):
                with TabPane("Training", id="training"):
                    yield TrainingPanel(id="panel")
                with TabPane("History", id="history"):
                    yield HistoryPane(self.runs_dir, id="history-pane")
                with TabPane("Log", id="log-tab"):
                    yield LogView(id="log", wrap=True, markup=True, min_width=20)  # wraps at its width (78 cuts at 80)
        yield Static(id="status")
        yield Footer()

    form = property(lambda self: self.query_one(ConfigForm))
    panel = property(lambda self: self.query_one(TrainingPanel))
    history = property(lambda self: self.query_one(HistoryPane))
    setup = property(lambda self: self.query_one(SetupPane))
    data = property(lambda self: self.query_one(DataLine).data)
    devices = property(lambda self: self.query_one(DataLine).devices)
    data_note = property(lambda self: self.query_one(DataLine).note)
    presets = property(lambda self: self.setup.presets)
    current_run = property(lambda self: self.session.run, doc="The run trained in this session (active or last).")

    @property
    def training(self) -> bool:
        return self.session.active

    @training.setter
    def training(self, active: bool) -> None:  # tests feeding fixed events stand in for a worker
        self.session.active = active

    def on_mount(self) -> None:
        self.session.node = self.panel  # the panel follows a job's events, which then come up here
        self.show_data_line()
        self.say("Enter picks a preset · edit the values · F5 trains · F1 every key · ^p palette")
        self.setup.start(self.settings)
        loading.load(self.query_one(DataLine), self.settings.data)
        self.history.reload()

    # -- the status line, the Log, the data line ------------------------------------------------

    def say(self, text: str, kind: str = "info", toast: bool = False) -> None:
        """Show one line in the status bar (kind: info, ok, error) and keep it in the Log tab;
        `toast` (and every error) also pops up a notification."""
        status = self.query_one("#status", Static)
        status.update(escape(text))
        status.set_classes(kind)
        style = {"ok": "green", "error": "bold red"}.get(kind, "")
        self.log_line(f"[{style}]{escape(text)}[/]" if style else escape(text), markup=True)
        if toast or kind == "error":
            self.notify(text, severity="error" if kind == "error" else "information", timeout=8 if kind == "error" else 4)

    def on_notice(self, message: Notice) -> None:
        self.say(message.text, message.kind, message.toast)

    def palette(self) -> list[tuple[str, object, str]]:
        """What the command palette offers, as (text, command, help): every action with a description,
        every preset, each sweep left to continue or drop, each Optuna study, and every run."""
        history = self.history
        items = [(b.description or b.action, partial(node.run_action, b.action), b.tooltip)
                 for node in (self, history) for b in node.BINDINGS if b.description]
        items.append(("Report the marked runs", self.report_runs, "the homework report's figures (PNG, SVG) and report.md "
                      "of History's marked runs, or its selected run"))
        items += [(f"Preset: {name}", partial(self.setup.use_preset, name), cfg.description)
                  for name, cfg in sorted(self.presets.items())]
        items += [(f"Continue sweep {sweep_id}", partial(self.continue_sweep, sweep_id), f"{left} of {total} runs left")
                  for sweep_id, (left, total) in history.pending_sweeps.items()]
        items += [(f"Drop sweep {sweep_id}", partial(self.drop_sweep, sweep_id), f"forget its {left} runs left")
                  for sweep_id, (left, total) in history.pending_sweeps.items()]
        items += [(f"Optuna study: {name}", partial(self.show_study, name), "its leaderboard: every trial, with where it ran")
                  for name in history.studies]
        items += [(f"Run: {run_id}", partial(self.app.show_run, run_id), "select it in History")
                  for run_id in history.table.runs]
        return items

    def on_job_log(self, message: JobLog) -> None:
        self.log_line(message.text)

    def on_runs_changed(self) -> None:
        self.history.reload()

    def log_line(self, text: str, markup: bool = False) -> None:
        """One line in the Log tab only."""
        self.query_one("#log", LogView).add(f"[dim]{time.strftime('%H:%M:%S')}[/] {text if markup else escape(text)}")

    def show_data_line(self) -> None:
        self.query_one(DataLine).show(self.form.values().get("val_ratio"), self.form.base.model.sequence)

    def on_data_loaded(self, message: DataLoaded) -> None:  # the data line has taken the data
        self.form.train_units = message.data.train_units
        self.form.validate()
        self.show_data_line()
        self._start_queued()

    def on_data_failed(self) -> None:
        self.show_data_line()
        self.queued = False
        self.say("no data: training and export are off; history still works", "error")

    def on_torch_ready(self, message: TorchReady) -> None:
        if message.error:
            self.queued = False
            self.say(f"torch could not load: {message.error}", "error")
        self.form.set_devices(message.devices)
        self.show_data_line()
        self._start_queued()

    def _start_queued(self) -> None:
        """Start what F5 asked for before the data and torch had loaded, once both have."""
        if self.queued and self.data is not None and self.devices is not None:
            self.queued = False
            self.action_start()

    def on_config_form_changed(self) -> None:
        self.show_data_line()
        refused, self.refused = self.refused, None
        if refused and refused not in self.form.problems:  # the field Start was refused for is fixed now
            left = next(iter(self.form.problems.items()), None)
            self.say(f"{LABELS[refused]} fixed: F5 starts the training" if left is None else
                     f"{LABELS[refused]} fixed; still {LABELS[left[0]]} {left[1]}", "info" if left is None else "error")
            self.refused = left[0] if left else None

    # -- training -------------------------------------------------------------------------------

    def _can_train(self) -> bool:
        """Whether a job may start now; if not, say why."""
        if self.training:
            self.say("a run is already active: stop it first (F6)", "error")
        elif self.data is None and not self.data_note.startswith("loading"):
            self.say(f"cannot start: no data ({self.data_note})", "error")
        elif self.data is None or self.devices is None:
            self.queued = True
            self.say(f"F5 queued: training starts once {'the data' if self.data is None else 'torch'} has loaded "
                     "(F6 cancels)")
        else:
            return True
        return False

    def _start(self, job, what: str, line: str) -> None:
        self.say(line)
        self.session.start(job, what)
        self.panel.begin(what)
        self.query_one(TabbedContent).active = "training"
        self.place_left()

    def action_start(self) -> None:
        """Train the form's config: a run, a sweep (a field holds a list) or a search (a range)."""
        if not self._can_train():
            return
        if self.form.problems:
            key, reason = next(iter(self.form.problems.items()))
            self.say(f"cannot start: {LABELS[key]} {reason}", "error")
            self.refused = key  # the line goes once the field is fixed
            self.query_one(f"#f-{key}").focus()
            return
        self._start(*jobs.from_form(self.form, self.data, self.runs_dir, self.settings.presets, jobs.UI(self.panel, self.settings.tensorboard)))

    def continue_sweep(self, sweep_id: str) -> None:
        """Run what is left of a saved sweep (also one started before the app was last closed)."""
        if not self._can_train():
            return
        try:
            queue = jobs.continued(self.runs_dir, sweep_id, self.presets, self.form.values())
        except PhonetuiError as e:
            self.say(str(e), "error")
            return
        self._start(jobs.sweep(queue, self.data, jobs.UI(self.panel, self.settings.tensorboard)), f"sweep {queue.id}",
                    f"continuing sweep {queue.id}: {len(queue.pending())} of {len(queue.trials)} runs left")

    def drop_sweep(self, sweep_id: str) -> None:
        if self.training:
            self.say("a run is active: stop it (F6) before dropping a sweep", "error")
        else:
            self.history.drop_sweep(sweep_id)

    def action_apply_finding(self) -> None:
        """Put the diagnosis' next step in the form, on the config of the run it is about (History's
        selected run on the History tab, else the run trained here); nothing starts."""
        on_history = self.query_one(TabbedContent).active == "history"
        source = self.history.query_one(RunDetails) if on_history else self.panel
        found = next((f for f in source.findings if f.change), None)
        if source.run is None or found is None:
            self.say("no diagnosis with a next step for the form" + (" (select a run in History)" if on_history and
                                                                     source.run is None else ""))
            return
        run = source.run
        self.form.fill(run.config, f"run {run.id}", {k: field_text(v) for k, v in found.change.items()})
        self.setup.shows(run.config.preset)
        self.query_one(TabbedContent).active = "training"
        self.place_left()
        self.say(f"the form has {run.id}'s config with the next step for {found.id}: {change_text(found.change)} "
                 "(F5 trains it)")

    def on_history_pane_load_config(self, message: HistoryPane.LoadConfig) -> None:
        self.form.fill(message.run.config, f"run {message.run.id}")
        self.query_one(SetupPane).shows(message.run.config.preset)
        self.query_one(TabbedContent).active = "training"
        self.say(f"loaded the config of {message.run.id} into the form: F5 runs it again")

    def on_history_pane_resume(self, message: HistoryPane.Resume) -> None:
        run = message.run
        if self._can_train():
            self._start(jobs.resume(run.path, self.data), run.id, f"resuming {run.id} from epoch {run.status.epochs_done + 1}")

    def on_trainer_event(self, message: TrainerEvent) -> None:
        """The status line and History's live row (the Training panel has followed the event already)."""
        e = message.event
        self.session.run = getattr(e, "run", None) or self.session.run
        if self.session.run is None:
            return
        self.history.follow(e, len(self.panel.live), self.panel.best_acc)
        if line := event_line(e, self.panel.best_epoch):
            self.say(*line)

    def on_training_ended(self, message: TrainingEnded) -> None:
        self.session.ended()
        self.place_left()
        if message.error:
            self.say(f"training failed: {message.error}", "error")
        if message.summary is not None:  # a sweep or search: its best run is the one F9 exports
            self.session.run = message.summary.best or self.session.run
        self.history.ended(self.current_run.id if self.current_run else None)  # else no run folder was made

    def action_stop(self) -> None:
        if self.queued and not self.training:
            self.queued = False
            self.say("the queued start is cancelled")
            return
        if not self.training:
            self.say("no run is active")
            return
        self.session.stop()
        self.say("stopping…")

    # -- tabs -----------------------------------------------------------------------------------

    @on(TabbedContent.TabActivated)
    def tab_shown(self, event: TabbedContent.TabActivated) -> None:
        self.place_left()
        if event.pane.id == "history":
            self.history.show_picked()

    def place_left(self) -> None:
        """The presets and form sit beside Training only (History and Log get the whole width); on a
        narrow screen a run being trained gets the whole width too."""
        narrow = self.app.size.width < 100  # the screen's -narrow class (HORIZONTAL_BREAKPOINTS) comes after a resize
        self.setup.display = self.query_one(TabbedContent).active == "training" and not (narrow and self.training)
        self.query_one(Footer).compact = narrow  # the keys closer together: ^p palette stays in view at 80 columns

    def on_resize(self) -> None:
        self.place_left()

    def action_switch_tab(self) -> None:
        tabs = self.query_one(TabbedContent)
        order = ["training", "history", "log-tab"]
        tabs.active = order[(order.index(tabs.active) + 1) % len(order)]
        if tabs.active == "history":
            self.history.table.focus()

    # -- export ---------------------------------------------------------------------------------

    def action_predict(self) -> None:
        """Export the selected run on the History tab, else this session's run (never an old run unasked)."""
        on_history = self.query_one(TabbedContent).active == "history"
        run = self.history.table.selected() if on_history else self.current_run
        if why := export.refusal(run, self.data, self.history.busy, on_history):
            self.say(why, "error")
            return
        device = self.form.values().get("device", "auto")
        self.say(f"predicting the test set with the best model of {run.id}…")
        export.run_csv(self, run, self.data, device if self.devices and device in self.devices else "auto")

    def on_history_pane_ensemble(self, message: HistoryPane.Ensemble) -> None:
        """Export the marked runs of History as one ensemble: their test posteriors averaged."""
        if self.data is None:
            self.say("cannot export: no data loaded", "error")
            return
        how = message.how
        self.say(f"predicting the test set with an ensemble of {len(message.runs)} runs "
                 f"({how['decode']}, {how['weights']} weights)…")
        out = self.runs_dir / f"ensemble-{time.strftime('%Y%m%d-%H%M%S')}.csv"
        export.ensemble_csv(self, message.runs, self.data, out, how["decode"], how["weights"])

    def on_predicted(self, message: Predicted) -> None:
        p = message.prediction
        acc = f", test acc {p.test_acc:.4f}" if p.test_acc is not None else " (no test labels)"
        self.say(f"wrote {p.path} ({p.rows:,} rows{acc})", "ok", toast=True)
        self.history.reload()

    def on_predict_failed(self, message: PredictFailed) -> None:
        self.say(f"export failed: {message.error}", "error")

    def report_runs(self) -> None:
        """Write the homework report of History's marked runs (else its selected run) in a thread worker:
        importing matplotlib and drawing take seconds."""
        chosen = self.history.marked() or [r for r in [self.history.table.selected()] if r is not None]
        if not chosen:
            self.say("nothing to report: mark runs in History (space), or select one", "error")
            return
        if chosen[0].state == "damaged":
            self.say(f"cannot report: {chosen[0].id} is damaged: {chosen[0].reason}", "error")
            return
        self.say(f"writing the report of {len(chosen)} run{'s' if len(chosen) > 1 else ''}…")

        def work() -> None:
            try:
                from .. import report, runs

                self.post_message(Reported(report.write([runs.open_run(r.path) for r in chosen])))
            except Exception as e:  # noqa: BLE001 - one line in the app
                self.post_message(Notice(f"report failed: {one_line(e)}", "error"))
        self.run_worker(work, thread=True, exclusive=True, exit_on_error=False, group="report")

    def on_reported(self, message: Reported) -> None:
        w = message.written
        self.say(f"wrote the report to {w.out}/ ({len(w.files)} files: report.md and its figures)", "ok", toast=True)

    def show_study(self, name: str) -> None:
        export.study_board(self, self.runs_dir, name)

    def on_unmount(self) -> None:
        self.session.stop()
