"""PhonetuiApp: choose a preset, edit it, train in a thread, watch, compare runs, export the CSV.

Heavy modules (torch, the trainer, prediction, data loading) are imported inside thread workers,
so the first frame appears before they are ready. Workers talk back only through messages.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import threading
from pathlib import Path

from rich.markup import escape
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, OptionList, ProgressBar, Static, TabbedContent, TabPane

from .. import presets as preset_store
from ..config import EDITABLE, RunConfig
from ..errors import PhonetuiError, one_line
from .form import FIELDS, ConfigForm
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
from .widgets import PresetList, QuitScreen, RunsTable, RunView


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "-"
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class PhonetuiApp(App):
    """The terminal app; `args` is the parsed command line (see phonetui.cli.parser)."""

    CSS_PATH = "app.tcss"
    TITLE = "phonetui"
    AUTO_FOCUS = "#presets"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("f5", "start", "Start", key_display="F5/s"),
        Binding("s", "start", show=False),
        Binding("f6", "stop", "Stop", key_display="F6/x"),
        Binding("x", "stop", show=False),
        Binding("f9", "predict", "Export", key_display="F9/p", tooltip="Predict the test set, write the CSV"),
        Binding("p", "predict", show=False),
        Binding("f2", "switch_tab", "Tab", key_display="F2/t", tooltip="Training / History"),
        Binding("t", "switch_tab", show=False),
        Binding("f3", "load_run", "Load", key_display="F3/l", tooltip="Load the selected run's config"),
        Binding("l", "load_run", show=False),
        Binding("f7", "sort_best", "Sort", key_display="F7/b", tooltip="Sort history by best val acc"),
        Binding("b", "sort_best", show=False),
        Binding("ctrl+q", "quit", "Quit", key_display="^q", priority=True),
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
        self.current_run = None
        self.live: list = []
        self.live_best: int | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="data-line")
        with Horizontal(id="body"):
            with VerticalScroll(id="left") as left:
                left.can_focus = False  # its fields scroll into view as they get focus
                yield PresetList(id="presets")
                yield ConfigForm(id="form")
            with TabbedContent(id="tabs"):
                with TabPane("Training", id="training"):
                    with Horizontal(id="progress-row"):
                        yield ProgressBar(total=1, show_eta=False, id="progress")
                        yield Static("no run yet: F5 starts one", id="progress-label")
                    yield RunView(id="live")
                with TabPane("History", id="history"):
                    yield RunsTable(id="runs")
                    with Vertical(id="picked"):
                        yield Static("select a run", id="picked-info")
                        yield RunView(id="picked-view")
        yield Static(id="status")
        yield Footer()

    @property
    def form(self) -> ConfigForm:
        return self.main.query_one(ConfigForm)

    @property
    def main(self) -> Screen:
        """The main screen (widgets are looked up there even while a dialog is open)."""
        return self.screen_stack[0]

    def on_mount(self) -> None:
        self.show_data_line()
        self.say("Enter picks a preset · edit the values · F5 trains · F2 shows the history")
        try:
            self.presets = preset_store.load_all(self.args.presets)
        except PhonetuiError as e:
            self.say(str(e), "error")
        base = self.presets.get(self.args.preset)
        if base is None:
            if self.presets:
                self.say(f"unknown preset '{self.args.preset}' (known: {', '.join(sorted(self.presets))})", "error")
            base = next(iter(sorted(self.presets.items())), ("", RunConfig()))[1]
        self.main.query_one(PresetList).show(self.presets, base.preset)
        overrides = {k: str(v) for k in EDITABLE if (v := getattr(self.args, k, None)) is not None}
        self.form.fill(base, f"preset {base.preset}", overrides)
        self.load_data()
        self.load_history()
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:  # as Stop and quit does: the run ends `stopped`, its best model kept
            loop.add_signal_handler(sig, self.stop_and_exit)

    # -- status and data line -------------------------------------------------------------------

    def say(self, text: str, kind: str = "info") -> None:
        """Put one line in the status bar (kind: info, ok, error)."""
        status = self.main.query_one("#status", Static)
        status.update(text)
        status.set_classes(kind)

    def show_data_line(self) -> None:
        if self.data is not None:
            ratio = self.form.values().get("val_ratio")
            line = escape(self.data.describe(ratio, self.form.base.model.sequence))
            line = line.replace("DEMO", "[reverse $warning] DEMO [/]", 1)
        else:
            line = escape(self.data_note)
        torch_note = "loading torch…" if self.devices is None else ", ".join(sorted(self.devices - {"auto"}))
        self.main.query_one("#data-line", Static).update(f"{line}  [dim]· {torch_note}[/]")

    # -- background loading ---------------------------------------------------------------------

    @work(thread=True, exit_on_error=False, group="load")
    def load_data(self) -> None:
        """Open the data folder, then import torch and list the devices it can use."""
        try:
            from .. import data

            def progress(done: int, total: int) -> None:
                self.call_from_thread(self.say, f"synthesizing the speech demo set (once): {done:,}/{total:,} utterances")

            path = self.args.data or data.default_dir(say=lambda text: self.call_from_thread(self.say, text),
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

    def on_data_failed(self, message: DataFailed) -> None:
        self.data_note = message.error
        self.show_data_line()
        self.main.query_one("#data-line").add_class("error")
        self.say("no data: training and export are off; history still works", "error")

    def on_torch_ready(self, message: TorchReady) -> None:
        self.devices = message.devices
        if message.error:
            self.say(f"torch could not load: {message.error}", "error")
        self.form.devices = message.devices
        self.form.validate()
        self.show_data_line()

    @work(thread=True, exclusive=True, exit_on_error=False, group="history")
    def load_history(self) -> None:
        try:
            from .. import runs

            self.post_message(HistoryLoaded(runs.list_runs(self.runs_dir)))
        except Exception as e:  # noqa: BLE001
            self.post_message(HistoryLoaded([], one_line(e)))

    def on_history_loaded(self, message: HistoryLoaded) -> None:
        table = self.main.query_one(RunsTable)
        picked = table.selected()
        table.show(message.runs, picked.id if picked else None)
        if message.error:
            self.say(f"runs folder: {message.error}", "error")
        self.show_picked()

    # -- the form -------------------------------------------------------------------------------

    @on(OptionList.OptionSelected, "#presets")
    def preset_chosen(self, event: OptionList.OptionSelected) -> None:
        cfg = self.presets[event.option.id]
        self.form.fill(cfg, f"preset {cfg.preset}")
        self.say(f"preset {cfg.preset}: {cfg.description}")

    def on_config_form_changed(self) -> None:
        self.show_data_line()

    # -- training -------------------------------------------------------------------------------

    def action_start(self) -> None:
        if self.training:
            self.say("a run is already active: stop it first (F6)", "error")
            return
        if self.data is None:
            self.say("cannot start: " + ("the data is still loading" if self.data_note.startswith("loading")
                                         else f"no data ({self.data_note})"), "error")
            return
        if self.devices is None:
            self.say("cannot start yet: torch is still loading", "error")
            return
        if self.form.problems:
            key, reason = next(iter(self.form.problems.items()))
            self.say(f"cannot start: {FIELDS[key]} {reason}", "error")
            self.main.query_one(f"#f-{key}").focus()
            return
        cfg = self.form.config()
        self.cancel.clear()
        self.training = True
        self.live, self.live_best, self.current_run = [], None, None
        with self.batch_update():
            self.main.query_one("#live", RunView).show([], None)
            self.main.query_one("#progress", ProgressBar).update(total=1, progress=0)
            self.main.query_one("#progress-label", Static).update("starting…")
            self.main.query_one(TabbedContent).active = "training"
        self.say(f"starting {cfg.preset}: lr {cfg.training.lr:g}, batch {cfg.training.batch_size}, "
                 f"{cfg.training.epochs} epochs")
        self.train_worker = self.train(cfg)

    @work(thread=True, exit_on_error=False, group="train")
    def train(self, cfg: RunConfig) -> None:
        """Run the trainer, forwarding each of its events as a message."""
        error = None
        try:
            from .. import trainer

            trainer.train(cfg, self.data, self.runs_dir, lambda e: self.post_message(TrainerEvent(e)), self.cancel)
        except Exception as e:  # noqa: BLE001 - every failure is shown, the app keeps running
            error = one_line(e)
        self.post_message(TrainingEnded(error))

    def on_trainer_event(self, message: TrainerEvent) -> None:
        from .. import trainer  # loaded by the worker that sent the event

        e = message.event
        if isinstance(e, trainer.RunStarted):
            self.current_run = e.run
            self.say(f"training {e.run.path} on {e.device}: {e.n_train:,} train / {e.n_val:,} val rows")
            self.load_history()
        elif isinstance(e, trainer.Progress):
            with self.batch_update():
                self.main.query_one("#progress", ProgressBar).update(total=e.total, progress=e.frames)
                self.main.query_one("#progress-label", Static).update(
                    f"epoch {e.epoch}/{e.epochs} · {e.frames_per_s:,.0f} frames/s · ETA {_duration(e.eta_s)}")
        elif isinstance(e, trainer.EpochEnd):
            m = e.metrics
            self.live.append(m)
            with self.batch_update():
                bar = self.main.query_one("#progress", ProgressBar)
                bar.update(progress=bar.total)
                self.main.query_one("#progress-label", Static).update(f"epoch {m.epoch}/{e.epochs} done")
                self.main.query_one("#live", RunView).show(self.live, self.live_best)
            val = "" if m.val_acc is None else f" · val acc {m.val_acc:.4f} loss {m.val_loss:.4f}"
            self.say(f"epoch {m.epoch}/{e.epochs}: train acc {m.train_acc:.4f} loss {m.train_loss:.4f}{val}")
        elif isinstance(e, trainer.BestSaved):
            self.live_best = e.epoch
            self.main.query_one("#live", RunView).show(self.live, self.live_best)
            if e.val_acc is not None:
                self.say(f"saving model with acc {e.val_acc:.3f}", "ok")
        elif isinstance(e, trainer.Finished):
            best = e.run.status.best_val_acc
            at = f": best val acc {best:.4f} at epoch {e.run.status.best_epoch}" if best is not None else ""
            self.main.query_one("#progress-label", Static).update(f"finished {len(self.live)} epochs")
            self.say(f"finished {e.run.path}{at} · F9 exports the CSV", "ok")
        elif isinstance(e, trainer.Cancelled):
            kept = f"the best model (epoch {self.live_best}) is kept" if self.live_best else "no epoch finished"
            self.main.query_one("#progress-label", Static).update("stopped")
            self.say(f"stopped {e.run.path}: {kept}", "ok")

    def on_training_ended(self, message: TrainingEnded) -> None:
        self.training = False
        if message.error:
            self.main.query_one("#progress-label", Static).update("failed")
            self.say(f"training failed: {message.error}", "error")
        if self.current_run is not None:  # a run folder was made
            self.load_history()

    def action_stop(self) -> None:
        if not self.training:
            self.say("no run is active")
            return
        self.cancel.set()
        self.say("stopping…")

    # -- history ------------------------------------------------------------------------------

    @on(DataTable.RowHighlighted, "#runs")
    def show_picked(self) -> None:
        run = self.main.query_one(RunsTable).selected()
        info = self.main.query_one("#picked-info", Static)
        if run is None:
            info.update("no runs yet" if not self.main.query_one(RunsTable).row_count else "select a run")
            self.main.query_one("#picked-view", RunView).show([], None)
            return
        if run.state == "damaged":
            info.update(escape(f"{run.id}: damaged: {run.reason}"))
            self.main.query_one("#picked-view", RunView).show([], None)
            return
        t, m = run.config.training, run.config.model
        metrics, note = [], ""
        try:
            metrics = run.metrics()
        except PhonetuiError as e:
            note = f" · {e}"
        acc = run.prediction.test_acc if run.prediction else None
        test = f" · test acc {acc:.4f}" if acc is not None else ""
        line = f"{run.id}: {m.summary()} · lr {t.lr:g} · batch {t.batch_size} · {run.state}{test}{note}"
        info.update(escape(line + self._phones_line(run)))
        self.main.query_one("#picked-view", RunView).show(metrics, run.status.best_epoch)

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

    @on(DataTable.HeaderSelected, "#runs")
    def header_clicked(self, event: DataTable.HeaderSelected) -> None:
        self.sort_history(event.column_key.value == "best")

    def action_sort_best(self) -> None:
        self.sort_history(not self.main.query_one(RunsTable).by_best)

    def sort_history(self, by_best: bool) -> None:
        table = self.main.query_one(RunsTable)
        table.by_best = by_best
        picked = table.selected()
        table.show(list(table.runs.values()), picked.id if picked else None)
        self.main.query_one(TabbedContent).active = "history"
        self.say("history sorted by best val acc" if by_best else "history sorted newest first")

    def action_switch_tab(self) -> None:
        tabs = self.main.query_one(TabbedContent)
        tabs.active = "history" if tabs.active == "training" else "training"
        if tabs.active == "history":
            self.main.query_one(RunsTable).focus()

    def action_load_run(self) -> None:
        run = self.main.query_one(RunsTable).selected()
        if run is None:
            self.say("no run selected: pick one in History (F2)", "error")
            return
        if run.state == "damaged":
            self.say(f"{run.id} is damaged: {run.reason}", "error")
            return
        self.form.fill(run.config, f"run {run.id}")
        self.say(f"loaded the config of {run.id} into the form: F5 runs it again")

    # -- prediction -----------------------------------------------------------------------------

    def action_predict(self) -> None:
        picked = self.main.query_one(RunsTable).selected()
        on_history = self.main.query_one(TabbedContent).active == "history"
        run = picked if on_history and picked else self.current_run or picked
        if run is None:
            self.say("nothing to export: train a run or select one in History", "error")
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
        self.say(f"wrote {p.path} ({p.rows:,} rows{acc})", "ok")
        self.load_history()

    def on_predict_failed(self, message: PredictFailed) -> None:
        self.say(f"export failed: {message.error}", "error")

    # -- quitting -------------------------------------------------------------------------------

    async def action_quit(self) -> None:
        if not self.training:
            self.exit()
            return

        def answer(stop: bool | None) -> None:
            if stop:
                self.stop_and_exit()

        self.push_screen(QuitScreen(), answer)

    @work(exclusive=True, group="quit")
    async def stop_and_exit(self) -> None:
        """Stop the run cleanly (cancel, then wait for the trainer thread) and exit."""
        self.cancel.set()
        self.say("stopping the run before quitting…")
        if self.train_worker is not None:
            await self.train_worker.wait()
        self.exit()

    def on_unmount(self) -> None:
        self.cancel.set()
        for sig in STOP_SIGNALS:
            asyncio.get_running_loop().remove_signal_handler(sig)
