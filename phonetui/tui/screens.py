"""The main screen: presets and form on the left; Training, History and Log tabs on the right.

It composes the panes, holds the global keys and routes what they post: the session runs the
jobs (tui.jobs), the Training panel and History follow the trainer's events themselves, and this
screen keeps the status line and the Log. Heavy modules (torch, the trainer, prediction, data
loading) are imported inside thread workers, so the first frame appears before they are ready;
workers talk back only through messages.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, OptionList, RichLog, Select, Static, TabbedContent, TabPane

from .. import presets as preset_store
from ..config import RunConfig, as_asked, n_epochs
from ..errors import PhonetuiError, one_line
from . import jobs
from .dialogs import StudyBoard
from .form import FIELDS, LABELS, ConfigForm
from .history import HistoryPane
from .messages import DataFailed, DataLoaded, Notice, Predicted, PredictFailed, TorchReady, TrainerEvent, TrainingEnded
from .session import Session, decide
from .settings import Settings
from .training import TrainingPanel
from .widgets import PresetList

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class UI:
    """How a job speaks from its worker thread: its lines come in order with its trainer events
    (the same message queue); the rest runs on the app's thread."""

    def __init__(self, screen: MainScreen) -> None:
        self.screen, self.call = screen, screen.app.call_from_thread

    def say(self, text: str, kind: str = "info", toast: bool = False) -> None:
        self.screen.panel.post_message(Notice(text, kind, toast))

    def queue(self, text: str) -> None:
        self.call(self.screen.panel.queue, text)

    def log(self, text: str) -> None:
        self.call(self.screen.log_line, text)

    def reload(self) -> None:
        self.call(self.screen.history.reload)


class MainScreen(Screen):
    """Choose a preset, edit it, train in a thread, watch, compare runs, export the CSV."""

    BINDINGS = [  # the footer shows the function keys of the main actions; the help (F1) every key
        Binding("f5,s", "start", "Start", key_display="F5", tooltip="Train the form's config in the background"),
        Binding("f6,x", "stop", "Stop", key_display="F6", tooltip="Stop the run; its best model is kept"),
        Binding("f9,p", "predict", "Export", key_display="F9", tooltip="Predict the test set, write the CSV"),
        Binding("f2,t", "switch_tab", "Tab", key_display="F2", tooltip="Training / History / Log"),
    ]

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings
        self.runs_dir: Path = settings.runs
        self.presets: dict[str, RunConfig] = {}
        self.data = None
        self.data_note = "loading data…"
        self.asked_early = False  # Start was pressed before the data had loaded
        self.devices: frozenset[str] | None = None
        self.session = Session(None)  # its messages go to the Training panel first (on_mount)

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
                    yield HistoryPane(self.runs_dir, id="history-pane")
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

    @property
    def history(self) -> HistoryPane:
        return self.query_one(HistoryPane)

    @property
    def training(self) -> bool:
        return self.session.active

    @training.setter
    def training(self, active: bool) -> None:  # tests feeding fixed events stand in for a worker
        self.session.active = active

    @property
    def current_run(self):
        """The run trained in this session (active or last), as its latest event showed it."""
        return self.session.run

    def on_mount(self) -> None:
        self.session.node = self.panel  # the panel follows a job's events, which then come up here
        self.show_data_line()
        self.say("Enter picks a preset · edit the values · F5 trains · F1 every key · ^p palette")
        try:
            self.presets = preset_store.load_all(list(self.settings.presets))
        except PhonetuiError as e:
            self.say(str(e), "error")
        base = self.presets.get(self.settings.preset)
        if base is None:
            if self.presets:
                self.say(f"unknown preset '{self.settings.preset}' (known: {', '.join(sorted(self.presets))})", "error")
            base = next(iter(sorted(self.presets.items())), ("", RunConfig()))[1]
        self.query_one(PresetList).show(self.presets, base.preset)
        picker = self.query_one("#preset-select", Select)
        picker.set_options([(f"{name}  {cfg.model.param_count():,} params", name) for name, cfg in sorted(self.presets.items())])
        if base.preset in self.presets:
            picker.value = base.preset
        self.form.set_search(self.settings.trials, self.settings.jobs)
        self.form.fill(base, f"preset {base.preset}", {k: str(v) for k, v in as_asked(self.settings.given).items()})
        self.load_data()
        self.history.reload()
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

    def on_notice(self, message: Notice) -> None:
        self.say(message.text, message.kind, message.toast)

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

            path = self.settings.data or data.default_dir(say=lambda text: self.app.call_from_thread(self.say, text),
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
        if self.asked_early:
            self.asked_early = False
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

    def on_history_pane_load_config(self, message: HistoryPane.LoadConfig) -> None:
        self.form.fill(message.run.config, f"run {message.run.id}")
        self.query_one(TabbedContent).active = "training"
        self.say(f"loaded the config of {message.run.id} into the form: F5 runs it again")

    # -- training -------------------------------------------------------------------------------

    def _can_train(self) -> bool:
        """Whether a job may start now; if not, say why."""
        if self.training:
            self.say("a run is already active: stop it first (F6)", "error")
        elif self.data is None:
            loading = self.data_note.startswith("loading")
            self.asked_early = loading
            self.say("cannot start: " + ("the data is still loading" if loading else f"no data ({self.data_note})"),
                     "error")
        elif self.devices is None:
            self.say("cannot start yet: torch is still loading", "error")
        else:
            return True
        return False

    def _start(self, job, what: str) -> None:
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
            self.query_one(f"#f-{key}").focus()
            return
        cfg, grid, ranges = self.form.config(), self.form.lists(), self.form.ranges()
        kind = decide(ranges, grid)
        if kind == "search":
            from .. import search

            texts = {k: self.form.text(k) for k in grid} | ranges
            space, _ = search.parse_space(texts)
            trials, n = self.form.search()
            name = search.study_name(cfg.preset, {k: getattr(cfg.training, k) for k in self.form.modified()
                                                  if k not in texts})
            self.say(f"Optuna search (study {name}): {trials} trials of {cfg.preset} over "
                     + ", ".join(f"{FIELDS[d.key]} {d}" for d in space) + (f", {n} at a time" if n > 1 else ""))
            every = {k: self.form.text(k) for k in FIELDS}  # the worker processes' flags, as typed
            self._start(jobs.search(name, cfg, space, every, self.data, self.runs_dir, trials, n,
                                    self.settings.presets, UI(self)), f"Optuna search over {cfg.preset}")
        elif kind == "sweep":
            from .. import sweep

            queue = sweep.create(self.runs_dir, cfg, grid)
            self.say(f"sweep {queue.id}: {len(queue.trials)} runs of {cfg.preset} over "
                     + ", ".join(f"{FIELDS[k]} {'/'.join(map(str, v))}" for k, v in grid.items()))
            self._start(jobs.sweep(queue, self.data, UI(self)), f"sweep {queue.id}")
        else:
            self.say(f"starting {cfg.preset}: lr {cfg.training.lr:g}, batch {cfg.training.batch_size}, "
                     f"{n_epochs(cfg.training.epochs)}")
            self._start(jobs.run(cfg, self.data, self.runs_dir), cfg.preset)

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
        self._start(jobs.sweep(queue, self.data, UI(self)), f"sweep {queue.id}")

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
        self.history.reload()

    def on_history_pane_resume(self, message: HistoryPane.Resume) -> None:
        run = message.run
        if self._can_train():
            self.say(f"resuming {run.id} from epoch {run.status.epochs_done + 1}")
            self._start(jobs.resume(run.path, self.data), run.id)

    def on_trainer_event(self, message: TrainerEvent) -> None:
        """The status line and History's live row (the Training panel has followed the event already)."""
        from .. import trainer  # loaded by the worker that sent the event

        e, panel, table = message.event, self.panel, self.history.table
        if getattr(e, "run", None) is not None:
            self.session.run = e.run
            self.history.busy = e.run.path
        run = self.session.run
        if isinstance(e, trainer.RunStarted):
            note = e.run.epochs_note
            self.say(f"training {e.run.path} on {e.device}: {e.n_train:,} train / {e.n_val:,} val rows"
                     + (f" ({note})" if note else ""))
            self.history.reload(follow=e.run.id)
        elif isinstance(e, trainer.Progress) and run is not None:
            part = round(e.frames / max(e.total, 1), 2)  # whole percents: a cell updated at most 100 times an epoch
            table.update_live(run.id, len(panel.live), panel.best_acc, part)
        elif isinstance(e, trainer.EpochEnd) and run is not None:
            m = e.metrics
            table.update_live(run.id, m.epoch, panel.best_acc)
            val = "" if m.val_acc is None else f" · val acc {m.val_acc:.4f} loss {m.val_loss:.4f}"
            self.say(f"epoch {m.epoch}/{e.epochs}: train acc {m.train_acc:.4f} loss {m.train_loss:.4f}{val}")
        elif isinstance(e, trainer.BestSaved) and run is not None:
            table.update_live(run.id, len(panel.live), e.val_acc)
            if e.val_acc is not None:
                self.say(f"saving model with acc {e.val_acc:.3f}", "ok")
        elif isinstance(e, trainer.Finished):
            best = e.run.status.best_val_acc
            at = f": best val acc {best:.4f} at epoch {e.run.status.best_epoch}" if best is not None else ""
            self.say(f"finished {e.run.path}{at} · F9 exports the CSV", "ok", toast=True)
        elif isinstance(e, trainer.Cancelled) and e.run.status.outcome == "pruned":
            self.say(f"{e.run.id}: {e.run.status.message}")
        elif isinstance(e, trainer.Cancelled):
            kept = f"the best model (epoch {panel.best_epoch}) is kept" if panel.best_epoch else "no model was saved yet"
            self.say(f"stopped {e.run.path}: {kept} · F10 on it in History resumes it", "ok", toast=True)

    def on_training_ended(self, message: TrainingEnded) -> None:
        self.session.ended()
        self.history.busy = None
        self.place_left()
        self.history.table.live.clear()
        if message.error:
            self.say(f"training failed: {message.error}", "error")
        if self.current_run is not None:  # else no run folder was made: the failure line stays
            self.history.reload(follow=self.current_run.id)

    def action_stop(self) -> None:
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
        self.query_one("#left").display = (self.query_one(TabbedContent).active == "training"
                                           and not (narrow and self.training))
        self.query_one(Footer).show_command_palette = not narrow

    def on_resize(self) -> None:
        self.place_left()

    def action_switch_tab(self) -> None:
        tabs = self.query_one(TabbedContent)
        order = ["training", "history", "log-tab"]
        tabs.active = order[(order.index(tabs.active) + 1) % len(order)]
        if tabs.active == "history":
            self.history.table.focus()

    # -- prediction -----------------------------------------------------------------------------

    def action_predict(self) -> None:
        """Export the selected run on the History tab, else this session's run (never an old run unasked)."""
        on_history = self.query_one(TabbedContent).active == "history"
        run = self.history.table.selected() if on_history else self.current_run
        if run is None:
            self.say("nothing to export: " + ("no run selected" if on_history else
                     "no run trained in this session; select one in History (F2), then F9"), "error")
        elif run.state == "damaged":
            self.say(f"cannot export: {run.id} is damaged: {run.reason}", "error")
        elif self.data is None:
            self.say("cannot export: no data loaded", "error")
        elif run.path == self.history.busy:
            self.say("this run is still training: stop it (F6) or wait, then export", "error")
        else:
            device = self.form.values().get("device", "auto")
            self.say(f"predicting the test set with the best model of {run.id}…")
            self.predict(run, device if self.devices and device in self.devices else "auto")

    def on_history_pane_ensemble(self, message: HistoryPane.Ensemble) -> None:
        """Export the marked runs of History as one ensemble: their test posteriors averaged."""
        if self.data is None:
            self.say("cannot export: no data loaded", "error")
            return
        how = message.how
        self.say(f"predicting the test set with an ensemble of {len(message.runs)} runs "
                 f"({how['decode']}, {how['weights']} weights)…")
        out = self.runs_dir / f"ensemble-{time.strftime('%Y%m%d-%H%M%S')}.csv"
        self.predict_ensemble(message.runs, out, how["decode"], how["weights"])

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
        self.history.reload()

    def on_predict_failed(self, message: PredictFailed) -> None:
        self.say(f"export failed: {message.error}", "error")

    @work(thread=True, exclusive=True, exit_on_error=False, group="study")
    def show_study(self, name: str) -> None:
        """An Optuna study's leaderboard in a dialog (read in a thread: the storage may be a server)."""
        try:
            from .. import search

            rows = search.leaderboard(search.open_study(self.runs_dir, name, create=False))
            self.app.call_from_thread(self.app.push_screen, StudyBoard(name, rows))
        except Exception as e:  # noqa: BLE001
            self.app.call_from_thread(self.say, f"study {name}: {one_line(e)}", "error")

    # -- stopping -------------------------------------------------------------------------------

    @work(exclusive=True, group="quit")
    async def stop_and_exit(self) -> None:
        """Stop the run cleanly (cancel, then wait for the trainer thread) and exit."""
        self.say("stopping the run before quitting…")
        await self.session.join()
        self.app.exit()

    @work(exclusive=True, group="quit")
    async def hang_up(self) -> None:
        """SIGHUP: the terminal is gone. Stop the run as Stop and quit does, then end the process
        at once: there is nothing left to draw, and Textual's shutdown would wait forever on its
        output to the closed terminal."""
        await self.session.join()
        os._exit(128 + signal.SIGHUP)

    def on_unmount(self) -> None:
        self.session.stop()
        for sig in STOP_SIGNALS:
            asyncio.get_running_loop().remove_signal_handler(sig)
