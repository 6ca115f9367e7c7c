"""PhonetuiApp: the main screen (phonetui.tui.screens), help, quitting (also on SIGTERM and SIGHUP,
and when the browser page of a served app goes away) and the command palette."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.driver import Driver
from textual.drivers.web_driver import WebDriver
from textual.message import Message
from textual.widgets import TabbedContent

from .. import runs
from ..errors import PhonetuiError
from .dialogs import Confirm, Help
from .history import HistoryPane
from .screens import MainScreen
from .settings import Settings
from .widgets import RunsTable


class PhonetuiCommands(Provider):
    """phonetui's own palette entries: every action, every preset and every run by name."""

    def entries(self) -> list[tuple[str, object, str]]:
        return [("Help: keys and actions", self.app.action_help, "F1 / ?"), *self.app.main.palette()]

    async def discover(self) -> Hits:
        for text, command, help_text in self.entries():
            yield DiscoveryHit(text, command, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, command, help_text in self.entries():
            if (score := matcher.match(text)) > 0:
                yield Hit(score, matcher.highlight(text), command, help=help_text)


PAGE_CLOSED = "stopped: the browser page was closed"  # the status message of a run whose served page went away


class PageClosed(Message):
    """The browser page of a served app went away."""


class PageDriver(WebDriver):
    """textual-serve's driver, telling the page's going away from a quit. When the page's websocket
    closes, textual-serve sends the app a 'quit' meta packet on its stdin (AppService.stop, then it
    waits for the process to end); WebDriver posts it as ExitApp, as it does a Ctrl+C."""

    def on_meta(self, packet_type: str, payload: dict[str, object]) -> None:
        if packet_type == "quit":
            self._app.post_message(PageClosed())
        else:
            super().on_meta(packet_type, payload)


def keys_shown(keys: str) -> str:
    """A binding's keys as the help lists them: 'f5,s' -> 'F5 / s', 'ctrl+e' -> '^e'."""
    names = {"question_mark": "?", "delete": "Delete", "space": "space"}
    shown = [names.get(k, k.upper() if k[0] == "f" and k[1:].isdigit() else k.replace("ctrl+", "^"))
             for k in keys.split(",")]
    return " / ".join(shown)


class PhonetuiApp(App):
    """The terminal app, with the settings the command line asked for."""

    CSS_PATH = "app.tcss"
    TITLE = "phonetui"
    AUTO_FOCUS = "#presets"
    COMMANDS = App.COMMANDS | {PhonetuiCommands}
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    BINDINGS = [
        Binding("f1,question_mark", "help", "Help", key_display="F1"),
        Binding("ctrl+q", "quit", "Quit", key_display="^q", priority=True),
    ]

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings
        self.stopped_run: runs.Run | None = None  # the run quitting stopped: `phonetui` says how to resume it

    def get_driver_class(self) -> type[Driver]:
        """PageDriver where `phonetui serve` started this app (serve.SERVED, named here: serve.py
        imports textual-serve, an extra)."""
        driver = super().get_driver_class()
        return PageDriver if os.environ.get("PHONETUI_SERVED") == "1" and issubclass(driver, WebDriver) else driver

    def get_default_screen(self) -> MainScreen:
        return MainScreen(self.settings)

    @property
    def main(self) -> MainScreen:
        """The main screen (also while a dialog is open above it)."""
        return self.screen_stack[0]

    def action_help(self) -> None:
        if isinstance(self.screen, Help):
            return
        keys = [(keys_shown(b.key), b.tooltip or b.description)
                for b in [*self.main.BINDINGS, *HistoryPane.BINDINGS, *self.BINDINGS] if b.tooltip or b.description]
        keys += [("ctrl+p", "command palette: presets, actions, runs"),
                 ("Enter", "fill the form with the highlighted preset")]
        self.push_screen(Help(keys))

    def show_run(self, run_id: str) -> None:
        table = self.main.query_one(RunsTable)
        self.main.query_one(TabbedContent).active = "history"
        if run_id in table.runs:
            table.move_cursor(row=table.get_row_index(run_id))
            table.focus()

    def on_mount(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop_and_exit)  # as Stop and quit: the run ends `stopped`
        loop.add_signal_handler(signal.SIGHUP, self.hang_up)

    def on_ready(self) -> None:
        self.closed_page_news()  # (once the main screen is up: it says its first line at its mount)

    def on_unmount(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            asyncio.get_running_loop().remove_signal_handler(sig)

    @work(exclusive=True, group="quit")
    async def stop_and_exit(self) -> None:
        """Stop the run cleanly (cancel, then wait for the trainer thread) and exit."""
        self.main.say("stopping the run before quitting…")
        active = self.main.training  # (SIGTERM comes here while idle too: a run stopped earlier is not news)
        await self.main.session.join()
        self.stopped_run = self._as_left() if active else None
        self.exit()

    def _as_left(self) -> runs.Run | None:
        """The run this session trained, read back now that the stop is over (its folder is the
        truth if the screen missed its last events), if it ended stopped: None when the job made no
        run folder yet, or its run ended otherwise meanwhile (finished, failed)."""
        run = self.main.current_run
        if run is not None:
            with contextlib.suppress(PhonetuiError, OSError):
                run = runs.open_run(run.path)
        return run if run is not None and run.state == "stopped" else None

    def on_page_closed(self) -> None:
        """The served page went away: its run stops as Stop and quit stops it, saying why, and the
        next app in this runs folder says so (closed_page_news)."""
        if not self.screen_stack:  # closed before the app had its screen
            self.exit()
            return
        self.main.session.cancel.stop(PAGE_CLOSED, runs.Outcome.STOPPED)
        self.stop_and_exit()

    @work(thread=True, exit_on_error=False, group="closed-page")
    def closed_page_news(self) -> None:
        """At startup: if the newest run stopped because its browser page closed and has not been
        resumed since, say so and put History's cursor on it, where F10 resumes it."""
        try:
            newest = next(iter(runs.list_runs(self.settings.runs)), None)
        except PhonetuiError:
            return  # History says what is wrong with the folder
        if isinstance(newest, runs.Run) and newest.state == "stopped" and newest.status.message == PAGE_CLOSED:
            self.call_from_thread(self._tell_closed_page, newest)

    def _tell_closed_page(self, run: runs.Run) -> None:
        n = run.status.epochs_done
        self.main.say(f"run {run.id} stopped when its browser page closed " +
                      (f"(after epoch {n}): F10 on it in History (F2) resumes it" if n else
                       "before its first epoch ended: nothing to resume"))
        self.main.history.reload(follow=run.id)

    @work(exclusive=True, group="quit")
    async def hang_up(self) -> None:
        """SIGHUP: the terminal is gone. Stop the run as Stop and quit does, then end the process
        at once: there is nothing left to draw, and Textual's shutdown would wait forever on its
        output to the closed terminal."""
        await self.main.session.join()
        os._exit(128 + signal.SIGHUP)

    async def action_quit(self) -> None:
        if not self.main.training:
            self.exit()
            return

        def answer(stop: bool | None) -> None:
            if stop:
                self.stop_and_exit()

        self.push_screen(Confirm("A run is active. Stop it (the best model is kept) and quit?", "Stop and quit"), answer)
