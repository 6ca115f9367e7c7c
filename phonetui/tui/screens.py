"""The main screen: presets and form on the left; Training, History and Log tabs on the right.

It owns the layout, the bindings and the handlers. Heavy modules (torch, the trainer, prediction,
data loading) are imported inside thread workers, so the first frame appears before they are
ready; workers talk back only through messages.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import threading
import time
from pathlib import Path

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, OptionList, RichLog, Select, Static, TabbedContent, TabPane

from .. import presets as preset_store
from ..config import EDITABLE, RunConfig, as_asked, n_epochs
from ..errors import PhonetuiError, one_line
from .dialogs import Compare, Confirm, ExportEnsemble
from .form import FIELDS, LABELS, ConfigForm
from .messages import (
    DataFailed,
    DataLoaded,
    HistoryLoaded,
    Predicted,
    PredictFailed,
    TorchReady,
    TrainerEvent,
    TrainingEnded,
)
from .panels import RunDetails, TrainingPanel
from .widgets import PresetList, RunsTable


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class MainScreen(Screen):
    """Choose a preset, edit it, train in a thread, watch, compare runs, export the CSV."""

    BINDINGS = [  # the footer shows the function keys of the main actions; the help (F1) every key
        Binding("f5,s", "start", "Start", key_display="F5", tooltip="Train the form's config in the background"),
        Binding("f6,x", "stop", "Stop", key_display="F6", tooltip="Stop the run; its best model is kept"),
        Binding("f9,p", "predict", "Export", key_display="F9", tooltip="Predict the test set, write the CSV"),
        Binding("f2,t", "switch_tab", "Tab", key_display="F2", tooltip="Training / History / Log"),
        Binding("f3,l", "load_run", "Load", show=False, tooltip="Load the selected run's config"),
        Binding("f4,c", "compare", "Compare", key_display="F4", tooltip="Compare the marked runs"),
        Binding("space", "mark", "Mark", show=False, tooltip="Mark the selected run for comparison"),
        Binding("f7,b", "sort_best", "Sort", show=False, tooltip="Sort the history by best val acc"),
        Binding("f8,delete", "delete_run", "Delete", show=False, tooltip="Delete the selected run"),
        Binding("f10,r", "resume", "Resume", key_display="F10", tooltip="Continue the selected stopped run"),
        Binding("ctrl+e,e", "export_ensemble", "Export ensemble", show=False,
                tooltip="Export the marked runs as one ensemble CSV (their posteriors averaged)"),
    ]

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__()
        self.args = args
        self.runs_dir: Path = args.runs
        self.presets: dict[str, RunConfig] = {}
        self.data = None
        self.data_note = "loading data…"
        self.devices: frozenset[str] | None = None
        self.cancel = threading.Event()
        self.training = False
        self.train_worker = None
        self.current_run = None  # the run trained in this session (active or last)
        self.ensemble_choices: dict[str, str] = {}  # the last export's decode and weights
        self.pending_sweeps: dict[str, tuple[int, int]] = {}  # sweep id -> (runs left, runs)

    def compose(self) -> ComposeResult:
        yield Static(id="data-line")
        with Horizontal(id="body"):
            with VerticalScroll(id="left") as left:
                left.can_focus = False  # its fields scroll into view as they get focus
                yield PresetList(id="presets")
                yield Select([], prompt="preset", allow_blank=True, compact=True, id="preset-select")  # narrow screens
                yield ConfigForm(id="form")
            with TabbedContent(id="tabs"):
                with TabPane("Training", id="training"):
                    yield TrainingPanel(id="panel")
                with TabPane("History", id="history"):
                    yield RunsTable(id="runs")
                    yield RunDetails(id="picked")
                with TabPane("Log", id="log-tab"):
                    yield RichLog(id="log", wrap=True, markup=True)
        yield Static(id="status")
        yield Footer()

    @property
    def form(self) -> ConfigForm:
        return self.query_one(ConfigForm)

    @property
    def panel(self) -> TrainingPanel:
        return self.query_one(TrainingPanel)

    def on_mount(self) -> None:
        self.show_data_line()
        self.say("Enter picks a preset · edit the values · F5 trains · F1 shows every key")
        try:
            self.presets = preset_store.load_all(self.args.presets)
        except PhonetuiError as e:
            self.say(str(e), "error")
        base = self.presets.get(self.args.preset)
        if base is None:
            if self.presets:
                self.say(f"unknown preset '{self.args.preset}' (known: {', '.join(sorted(self.presets))})", "error")
            base = next(iter(sorted(self.presets.items())), ("", RunConfig()))[1]
        self.query_one(PresetList).show(self.presets, base.preset)
        picker = self.query_one("#preset-select", Select)
        picker.set_options([(f"{name}  {cfg.model.param_count():,} params", name) for name, cfg in sorted(self.presets.items())])
        if base.preset in self.presets:
            picker.value = base.preset
        self.form.set_search(max(1, getattr(self.args, "trials", None) or 8), max(1, getattr(self.args, "jobs", None) or 1))
        given = {k: v for k in EDITABLE if (v := getattr(self.args, k, None)) is not None}
        self.form.fill(base, f"preset {base.preset}", {k: str(v) for k, v in as_asked(given).items()})
        self.load_data()
        self.load_history()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop_and_exit)  # as Stop and quit: the run ends `stopped`
        loop.add_signal_handler(signal.SIGHUP, self.hang_up)

    # -- messages: the status line, the log, toasts -----------------------------------------------

    def say(self, text: str, kind: str = "info", toast: bool = False) -> None:
        """Show one line in the status bar (kind: info, ok, error) and keep it in the Log tab;
        `toast` (and every error) also pops up a notification."""
        status = self.query_one("#status", Static)
        status.update(escape(text))
        status.set_classes(kind)
        style = {"ok": "green", "error": "bold red"}.get(kind, "")
        line = escape(text) if not style else f"[{style}]{escape(text)}[/]"
        self.query_one("#log", RichLog).write(f"[dim]{time.strftime('%H:%M:%S')}[/] {line}")
        if toast or kind == "error":
            self.notify(text, severity="error" if kind == "error" else "information",
                        timeout=8 if kind == "error" else 4)

    def log_line(self, text: str) -> None:
        """One line in the Log tab only."""
        self.query_one("#log", RichLog).write(f"[dim]{time.strftime('%H:%M:%S')}[/] {escape(text)}")

    def show_data_line(self) -> None:
        if self.data is not None:
            ratio = self.form.values().get("val_ratio")
            line = escape(self.data.describe(ratio, self.form.base.model.sequence))
            line = line.replace("DEMO", "[reverse $warning] DEMO [/]", 1)
        else:
            line = escape(self.data_note)
        torch_note = "loading torch…" if self.devices is None else ", ".join(sorted(self.devices - {"auto"}))
        self.query_one("#data-line", Static).update(f"{line}  [dim]· {torch_note}[/]")

    # -- background loading ---------------------------------------------------------------------

    @work(thread=True, exit_on_error=False, group="load")
    def load_data(self) -> None:
        """Open the data folder, then import torch and list the devices it can use."""
        try:
            from .. import data

            def progress(done: int, total: int) -> None:
                self.app.call_from_thread(self.say, f"synthesizing the speech demo set (once): {done:,}/{total:,} utterances")

            path = self.args.data or data.default_dir(say=lambda text: self.app.call_from_thread(self.say, text),
                                                      progress=progress)
            self.post_message(DataLoaded(data.load(path)))
        except Exception as e:  # noqa: BLE001 - shown in the data line
            self.post_message(DataFailed(one_line(e)))
        try:
            import torch

            from .. import trainer  # noqa: F401 - imported now so that Start is instant

            devices = {"auto", "cpu"}
            if torch.cuda.is_available():
                devices |= {"cuda"} | {f"cuda:{i}" for i in range(torch.cuda.device_count())}
            if torch.backends.mps.is_available():
                devices.add("mps")
            self.post_message(TorchReady(frozenset(devices)))
        except Exception as e:  # noqa: BLE001
            self.post_message(TorchReady(frozenset(), one_line(e)))

    def on_data_loaded(self, message: DataLoaded) -> None:
        self.data, self.data_note = message.data, ""
        self.form.train_units = message.data.train_units
        self.form.validate()
        self.show_data_line()
        if "still loading" in str(self.query_one("#status", Static).render()):
            self.say("the data has loaded: F5 trains")

    def on_data_failed(self, message: DataFailed) -> None:
        self.data_note = message.error
        self.show_data_line()
        self.query_one("#data-line").add_class("error")
        self.say("no data: training and export are off; history still works", "error")

    def on_torch_ready(self, message: TorchReady) -> None:
        self.devices = message.devices
        if message.error:
            self.say(f"torch could not load: {message.error}", "error")
        self.form.set_devices(message.devices)
        self.show_data_line()

    @work(thread=True, exclusive=True, exit_on_error=False, group="history")
    def load_history(self, follow: str | None = None) -> None:
        """Read the runs folder; `follow`: the run id to put the cursor on."""
        try:
            from .. import runs, sweep

            sweeps = {s.id: (len(s.pending()), len(s.trials)) for s in sweep.list_sweeps(self.runs_dir)
                      if isinstance(s, sweep.Sweep)}
            self.post_message(HistoryLoaded(runs.list_runs(self.runs_dir), follow=follow,
                                            sweeps={k: v for k, v in sweeps.items() if v[0]}))
        except Exception as e:  # noqa: BLE001
            self.post_message(HistoryLoaded([], one_line(e)))

    def on_history_loaded(self, message: HistoryLoaded) -> None:
        table = self.query_one(RunsTable)
        picked = table.selected()
        table.show(message.runs, message.follow or (picked.id if picked else None))
        if message.error:
            self.say(f"runs folder: {message.error}", "error")
        new = set(message.sweeps) - set(self.pending_sweeps)
        self.pending_sweeps = message.sweeps
        for sweep_id in sorted(new):
            if not self.training:
                left, total = message.sweeps[sweep_id]
                self.say(f"sweep {sweep_id} has {left} of {total} runs left: ctrl+p, 'Continue sweep' runs them, "
                         "'Drop sweep' forgets them")
        self.show_picked()

    # -- the form -------------------------------------------------------------------------------

    @on(OptionList.OptionSelected, "#presets")
    def preset_chosen(self, event: OptionList.OptionSelected) -> None:
        self.use_preset(event.option.id)

    @on(Select.Changed, "#preset-select")
    def preset_picked(self, event: Select.Changed) -> None:
        """The narrow screen's preset list (one line); choosing the form's own preset changes nothing."""
        if event.value in self.presets and event.value != self.form.base.preset:
            self.use_preset(event.value)

    def use_preset(self, name: str) -> None:
        cfg = self.presets[name]
        self.form.fill(cfg, f"preset {cfg.preset}")
        self.say(f"preset {cfg.preset}: {cfg.description}")

    def on_config_form_changed(self) -> None:
        self.show_data_line()

    # -- training -------------------------------------------------------------------------------

    def _can_train(self) -> bool:
        """Whether a run may start now; if not, say why."""
        if self.training:
            self.say("a run is already active: stop it first (F6)", "error")
        elif self.data is None:
            self.say("cannot start: " + ("the data is still loading" if self.data_note.startswith("loading")
                                         else f"no data ({self.data_note})"), "error")
        elif self.devices is None:
            self.say("cannot start yet: torch is still loading", "error")
        else:
            return True
        return False

    def action_start(self) -> None:
        """Train the form's config; fields holding comma-separated values make it a sweep of every combination."""
        if not self._can_train():
            return
        if self.form.problems:
            key, reason = next(iter(self.form.problems.items()))
            self.say(f"cannot start: {LABELS[key]} {reason}", "error")
            self.query_one(f"#f-{key}").focus()
            return
        cfg, grid = self.form.config(), self.form.lists()
        if self.form.ranges():
            from .. import search

            texts = {k: self.form.text(k) for k in grid} | self.form.ranges()
            space, _ = search.parse_space(texts)
            trials, jobs = self.form.search()
            fixed = {k: getattr(cfg.training, k) for k in self.form.modified() if k not in texts}
            name = search.study_name(cfg.preset, fixed)
            self.say(f"Optuna search (study {name}): {trials} trials of {cfg.preset} over "
                     + ", ".join(f"{FIELDS[d.key]} {d}" for d in space) + (f", {jobs} at a time" if jobs > 1 else ""))
            self._begin(f"Optuna search over {cfg.preset}")
            self.train_worker = self.run_search(cfg, space, name, trials, jobs)
            return
        if grid:
            from .. import sweep

            queue = sweep.create(self.runs_dir, cfg, grid)
            self.say(f"sweep {queue.id}: {len(queue.trials)} runs of {cfg.preset} over "
                     + ", ".join(f"{FIELDS[k]} {'/'.join(map(str, v))}" for k, v in grid.items()))
            self._begin(f"sweep {queue.id}")
            self.train_worker = self.run_sweep(queue)
            return
        self.say(f"starting {cfg.preset}: lr {cfg.training.lr:g}, batch {cfg.training.batch_size}, "
                 f"{n_epochs(cfg.training.epochs)}")
        self._begin(cfg.preset)
        self.train_worker = self.train(cfg)

    def continue_sweep(self, sweep_id: str) -> None:
        """Run what is left of a saved sweep (also one started before the app was last closed)."""
        from .. import sweep

        if not self._can_train():
            return
        try:
            queue = sweep.load(self.runs_dir, sweep_id)
            if queue.base is None:  # saved before sweeps kept their config: its preset with the form's values
                base = self.presets.get(queue.preset)
                if base is None:
                    raise PhonetuiError(f"sweep {sweep_id}: preset '{queue.preset}' not found")
                queue.base = base.with_training(**self.form.values())
        except PhonetuiError as e:
            self.say(str(e), "error")
            return
        self.say(f"continuing sweep {queue.id}: {len(queue.pending())} of {len(queue.trials)} runs left")
        self._begin(f"sweep {queue.id}")
        self.train_worker = self.run_sweep(queue)

    def drop_sweep(self, sweep_id: str) -> None:
        """Forget a pending sweep (its queue; the runs it trained stay)."""
        from .. import sweep

        if self.training:
            self.say("a run is active: stop it (F6) before dropping a sweep", "error")
            return
        try:
            queue = sweep.drop(self.runs_dir, sweep_id)
        except PhonetuiError as e:
            self.say(str(e), "error")
            return
        self.say(f"dropped sweep {queue.id}: {len(queue.pending())} runs left untrained; its runs stay", "ok")
        self.load_history()

    def action_resume(self) -> None:
        run = self.query_one(RunsTable).selected() if self.query_one(TabbedContent).active == "history" else None
        if run is None:
            self.say("select a stopped or interrupted run in History (F2), then F10 resumes it", "error")
        elif run.state not in ("stopped", "interrupted", "failed"):
            self.say(f"{run.id} is {run.state}: only a stopped or interrupted run can be resumed", "error")
        elif self._can_train():
            self.say(f"resuming {run.id} from epoch {run.status.epochs_done + 1}")
            self._begin(run.id)
            self.train_worker = self.resume(run)

    def _begin(self, what: str) -> None:
        self.cancel.clear()
        self.training, self.current_run = True, None
        self.panel.begin(what)
        self.query_one(TabbedContent).active = "training"
        self.place_left()

    def _events(self, event) -> None:
        self.post_message(TrainerEvent(event))

    def _listener(self):
        """A new job's trainer listener: its events posted here (and TensorBoard's files, if asked for)."""
        from .. import tensorboard

        return tensorboard.tee(self._events) if tensorboard.wanted() else self._events

    @work(thread=True, exit_on_error=False, group="train")
    def train(self, cfg: RunConfig) -> None:
        """Run the trainer, forwarding each of its events as a message."""
        error = None
        try:
            from .. import trainer

            trainer.train(cfg, self.data, self.runs_dir, self._listener(), self.cancel)
        except Exception as e:  # noqa: BLE001 - every failure is shown, the app keeps running
            error = one_line(e)
        self.post_message(TrainingEnded(error))

    @work(thread=True, exit_on_error=False, group="train")
    def resume(self, run) -> None:
        error = None
        try:
            from .. import runs, trainer

            trainer.resume(runs.open_run(run.path), self.data, self._listener(), self.cancel)
        except Exception as e:  # noqa: BLE001
            error = one_line(e)
        self.post_message(TrainingEnded(error))

    @work(thread=True, exit_on_error=False, group="train")
    def run_search(self, base: RunConfig, space, name: str, trials: int, jobs: int) -> None:
        """An Optuna study named after the preset (SQLite in the runs folder): trials one after
        another here, or `jobs` at once, each in a worker process whose lines go to the Log."""
        error = None
        try:
            from .. import search

            study = search.open_study(self.runs_dir, name)

            def announce(number: int, i: int, n: int, values: dict) -> None:
                shown = ", ".join(f"{FIELDS.get(k, k)} {v:.3g}" if isinstance(v, float) else f"{FIELDS.get(k, k)} {v}"
                                  for k, v in values.items())
                done = sum(t.state.name == "COMPLETE" for t in study.trials)
                self.app.call_from_thread(self.say, f"Optuna trial {number} ({i} of {n}): {shown}")
                self.app.call_from_thread(self.panel.queue, f"Optuna study {study.study_name}: trial {number} "
                                          f"({i} of {n}: {shown}) · {done} complete in the study so far")

            if jobs > 1:
                finished = self._search_jobs(study, base, trials, jobs)
            else:
                finished = search.optimize(study, base, space, self.data, self.runs_dir, trials, self._listener(),
                                           self.cancel, announce)
            if finished:
                best = study.best_trial
                self.app.call_from_thread(self.say, f"Optuna search finished: best val acc {best.value:.4f} "
                                          f"(trial {best.number}, run {best.user_attrs.get('run')})", "ok", True)
        except Exception as e:  # noqa: BLE001
            error = one_line(e)
        self.post_message(TrainingEnded(error))

    def _search_jobs(self, study, base: RunConfig, trials: int, jobs: int) -> bool:
        """The search's trials in `jobs` worker processes (`phonetui search --jobs`); False when stopped."""
        from .. import search, storage

        texts = {k: self.form.text(k) for k in FIELDS}  # every field as typed: the workers' flags
        shares = search.shares(trials, jobs)
        commands = [search.worker_command(base.preset, study.study_name, texts, n, f"{i}/{len(shares)}",
                                          self.data.path, self.runs_dir, self.args.presets)
                    for i, n in enumerate(shares, 1)]
        self.app.call_from_thread(self.panel.queue, f"Optuna study {study.study_name}: {trials} trials, "
                                  f"{len(shares)} worker processes at once (their lines: the Log tab)")

        def say(job: int, line: str) -> None:
            self.app.call_from_thread(self.log_line, f"[job {job}] {line}")
            if line.startswith("run "):
                self.app.call_from_thread(self.load_history)

        codes = search.run_jobs(commands, say, self.cancel, {storage.ENV: storage.url_for(self.runs_dir, None)})
        if self.cancel.is_set():
            return False
        if any(codes):
            raise PhonetuiError(f"Optuna search: a worker process ended with exit code {next(c for c in codes if c)} "
                                "(its last lines are in the Log)")
        return True

    @work(thread=True, exit_on_error=False, group="train")
    def run_sweep(self, queue) -> None:
        """Train the sweep's pending trials one after another (each an ordinary run)."""
        error = None
        try:
            from .. import sweep

            def announce(i: int, n: int, trial) -> None:
                values = ", ".join(f"{FIELDS.get(k, k)} {v}" for k, v in trial.values.items())
                self.app.call_from_thread(self.say, f"sweep {queue.id}: run {i}/{n} ({values})")
                total = len(queue.trials)
                self.app.call_from_thread(self.panel.queue, f"sweep {queue.id}: run {total - n + i} of {total} ({values})")

            if sweep.run(queue, self.data, self._listener(), self.cancel, announce):
                self.app.call_from_thread(self.say, f"sweep {queue.id} finished: History ranks its runs "
                                          "(F7 sorts by best val acc)", "ok", True)
        except Exception as e:  # noqa: BLE001
            error = one_line(e)
        self.post_message(TrainingEnded(error))

    def on_trainer_event(self, message: TrainerEvent) -> None:
        from .. import trainer  # loaded by the worker that sent the event

        e, panel, table = message.event, self.panel, self.query_one(RunsTable)
        if isinstance(e, trainer.RunStarted):
            self.current_run = e.run
            panel.started(e)
            note = e.run.epochs_note
            self.say(f"training {e.run.path} on {e.device}: {e.n_train:,} train / {e.n_val:,} val rows"
                     + (f" ({note})" if note else ""))
            self.load_history(follow=e.run.id)
        elif isinstance(e, trainer.Progress):
            panel.progress(e)
            if self.current_run is not None:
                part = round(e.frames / max(e.total, 1), 2)  # whole percents: a cell updated at most 100 times an epoch
                table.update_live(self.current_run.id, len(panel.live), panel.best_acc, part)
        elif isinstance(e, trainer.EpochEnd):
            m = e.metrics
            panel.epoch(e)
            table.update_live(self.current_run.id, m.epoch, panel.best_acc)
            val = "" if m.val_acc is None else f" · val acc {m.val_acc:.4f} loss {m.val_loss:.4f}"
            self.say(f"epoch {m.epoch}/{e.epochs}: train acc {m.train_acc:.4f} loss {m.train_loss:.4f}{val}")
        elif isinstance(e, trainer.BestSaved):
            panel.best(e)
            table.update_live(self.current_run.id, len(panel.live), e.val_acc)
            if e.val_acc is not None:
                self.say(f"saving model with acc {e.val_acc:.3f}", "ok")
        elif isinstance(e, trainer.Finished):
            best = e.run.status.best_val_acc
            at = f": best val acc {best:.4f} at epoch {e.run.status.best_epoch}" if best is not None else ""
            panel.finished()
            self.say(f"finished {e.run.path}{at} · F9 exports the CSV", "ok", toast=True)
        elif isinstance(e, trainer.Cancelled) and e.run.status.outcome == "pruned":
            self.say(f"{e.run.id}: {e.run.status.message}")
        elif isinstance(e, trainer.Cancelled):
            kept = f"the best model (epoch {panel.best_epoch}) is kept" if panel.best_epoch else "no model was saved yet"
            panel.ended("stopped")
            self.say(f"stopped {e.run.path}: {kept} · F10 on it in History resumes it", "ok", toast=True)

    def on_training_ended(self, message: TrainingEnded) -> None:
        self.training = False
        self.place_left()
        self.query_one(RunsTable).live.clear()
        if message.error:
            self.panel.ended("failed")
            self.say(f"training failed: {message.error}", "error")
        if self.current_run is not None:  # else no run folder was made: the failure line stays
            self.load_history(follow=self.current_run.id)

    def action_stop(self) -> None:
        if not self.training:
            self.say("no run is active")
            return
        self.cancel.set()
        self.say("stopping…")

    # -- history ------------------------------------------------------------------------------

    @on(TabbedContent.TabActivated)
    def tab_shown(self, event: TabbedContent.TabActivated) -> None:
        self.place_left()
        if event.pane.id == "history":
            self.show_picked()

    def place_left(self) -> None:
        """The presets and form sit beside Training only (History and Log get the whole width); on a
        narrow screen a run being trained gets the whole width too."""
        narrow = self.app.size.width < 100  # the screen's -narrow class (HORIZONTAL_BREAKPOINTS) comes after a resize
        self.query_one("#left").display = (self.query_one(TabbedContent).active == "training"
                                           and not (narrow and self.training))
        self.query_one(Footer).show_command_palette = not narrow

    def on_resize(self) -> None:
        self.place_left()

    @on(DataTable.RowHighlighted, "#runs")
    def show_picked(self) -> None:
        table = self.query_one(RunsTable)
        self.query_one(RunDetails).show(table.selected(), "select a run" if table.row_count else "no runs yet")

    @on(DataTable.HeaderSelected, "#runs")
    def header_clicked(self, event: DataTable.HeaderSelected) -> None:
        if event.column_key.value != "mark":
            self.query_one(RunsTable).sort_by(event.column_key.value)
            self.say(self.query_one(RunsTable).sort_line())

    def action_sort_best(self) -> None:
        table = self.query_one(RunsTable)
        table.sort_by("best", True) if table.sort_column != "best" else table.sort_by("id", True)
        self.query_one(TabbedContent).active = "history"
        self.say(table.sort_line())

    def action_switch_tab(self) -> None:
        tabs = self.query_one(TabbedContent)
        order = ["training", "history", "log-tab"]
        tabs.active = order[(order.index(tabs.active) + 1) % len(order)]
        if tabs.active == "history":
            self.query_one(RunsTable).focus()

    def _picked(self, verb: str, damaged_ok: bool = False):
        run = self.query_one(RunsTable).selected()
        if run is None:
            self.say(f"no run selected: pick one in History (F2) to {verb}", "error")
        elif run.state == "damaged" and not damaged_ok:
            self.say(f"cannot {verb}: {run.id} is damaged: {run.reason}", "error")
            return None
        return run

    def action_load_run(self) -> None:
        if run := self._picked("load its config"):
            self.form.fill(run.config, f"run {run.id}")
            self.query_one(TabbedContent).active = "training"
            self.say(f"loaded the config of {run.id} into the form: F5 runs it again")

    def action_mark(self) -> None:
        if self.query_one(TabbedContent).active == "history" and (run := self.query_one(RunsTable).toggle_mark()):
            n = len(self.query_one(RunsTable).marked)
            self.say(f"{'marked' if run.id in self.query_one(RunsTable).marked else 'unmarked'} {run.id} · "
                     f"{n} marked" + (" · F4 compares them" if n >= 2 else ""))

    def action_compare(self) -> None:
        table = self.query_one(RunsTable)
        chosen = [r for i in sorted(table.marked) if (r := table.runs.get(i)) is not None and r.state != "damaged"]
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

    def action_delete_run(self) -> None:
        run = self._picked("delete it", damaged_ok=True)
        if run is None:
            return
        if self.training and self.current_run is not None and run.path == self.current_run.path:
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
                self.load_history()

        self.app.push_screen(Confirm(f"Delete run {run.id} and all its files (best model, CSV)?", "Delete"), answer)

    # -- prediction -----------------------------------------------------------------------------

    def action_predict(self) -> None:
        """Export the selected run on the History tab, else this session's run (never an old run unasked)."""
        on_history = self.query_one(TabbedContent).active == "history"
        run = self.query_one(RunsTable).selected() if on_history else self.current_run
        if run is None:
            self.say("nothing to export: " + ("no run selected" if on_history else
                     "no run trained in this session; select one in History (F2), then F9"), "error")
        elif run.state == "damaged":
            self.say(f"cannot export: {run.id} is damaged: {run.reason}", "error")
        elif self.data is None:
            self.say("cannot export: no data loaded", "error")
        elif self.training and self.current_run is not None and run.path == self.current_run.path:
            self.say("this run is still training: stop it (F6) or wait, then export", "error")
        else:
            device = self.form.values().get("device", "auto")
            self.say(f"predicting the test set with the best model of {run.id}…")
            self.predict(run, device if self.devices and device in self.devices else "auto")

    def action_export_ensemble(self) -> None:
        """Export the marked runs of History as one ensemble: their test posteriors averaged."""
        table = self.query_one(RunsTable)
        chosen = [r for i in sorted(table.marked) if (r := table.runs.get(i)) is not None and r.state != "damaged"]
        busy = self.current_run.path if self.training and self.current_run is not None else None
        if len(chosen) < 2:
            self.say("mark two or more runs in History (space), then e exports them as one ensemble", "error")
        elif self.data is None:
            self.say("cannot export: no data loaded", "error")
        elif busy is not None and any(r.path == busy for r in chosen):
            self.say("a marked run is still training: stop it (F6) or wait, then export", "error")
        else:
            def answer(how: dict[str, str] | None) -> None:
                if how is None:
                    return
                self.ensemble_choices = how
                self.say(f"predicting the test set with an ensemble of {len(chosen)} runs "
                         f"({how['decode']}, {how['weights']} weights)…")
                out = self.runs_dir / f"ensemble-{time.strftime('%Y%m%d-%H%M%S')}.csv"
                self.predict_ensemble(chosen, out, how["decode"], how["weights"])

            self.app.push_screen(ExportEnsemble([r.id for r in chosen], self.ensemble_choices), answer)

    @work(thread=True, exclusive=True, exit_on_error=False, group="predict")
    def predict_ensemble(self, members: list, out: Path, decode: str, weights: str) -> None:
        try:
            from ..predict import predict_ensemble

            self.post_message(Predicted(None, predict_ensemble(members, self.data, out, decode=decode, weights=weights)))
        except Exception as e:  # noqa: BLE001
            self.post_message(PredictFailed(one_line(e)))

    @work(thread=True, exclusive=True, exit_on_error=False, group="predict")
    def predict(self, run, device: str) -> None:
        try:
            from ..predict import predict

            self.post_message(Predicted(run, predict(run, self.data, device=device)))
        except Exception as e:  # noqa: BLE001
            self.post_message(PredictFailed(one_line(e)))

    def on_predicted(self, message: Predicted) -> None:
        p = message.prediction
        acc = f", test acc {p.test_acc:.4f}" if p.test_acc is not None else " (no test labels)"
        self.say(f"wrote {p.path} ({p.rows:,} rows{acc})", "ok", toast=True)
        self.load_history()

    def on_predict_failed(self, message: PredictFailed) -> None:
        self.say(f"export failed: {message.error}", "error")

    # -- stopping -------------------------------------------------------------------------------

    @work(exclusive=True, group="quit")
    async def stop_and_exit(self) -> None:
        """Stop the run cleanly (cancel, then wait for the trainer thread) and exit."""
        self.cancel.set()
        self.say("stopping the run before quitting…")
        if self.train_worker is not None:
            await self.train_worker.wait()
        self.app.exit()

    @work(exclusive=True, group="quit")
    async def hang_up(self) -> None:
        """SIGHUP: the terminal is gone. Stop the run as Stop and quit does, then end the process
        at once: there is nothing left to draw, and Textual's shutdown would wait forever on its
        output to the closed terminal."""
        self.cancel.set()
        if self.train_worker is not None:
            await self.train_worker.wait()
        os._exit(128 + signal.SIGHUP)

    def on_unmount(self) -> None:
        self.cancel.set()
        for sig in STOP_SIGNALS:
            asyncio.get_running_loop().remove_signal_handler(sig)
