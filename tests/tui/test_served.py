"""A served app whose browser page goes away: its run stops saying so, and the next app in the runs
folder tells of it and puts History's cursor on it (F10 resumes it). The page's going away is what
textual-serve does when the page's websocket closes: a 'quit' meta packet on the app's stdin."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest
import textual.constants
from textual.drivers._byte_stream import ByteStream
from textual.drivers.web_driver import WebDriver

from phonetui import runs
from phonetui.config import RunConfig
from phonetui.tui.app import PAGE_CLOSED, PageDriver
from phonetui.tui.dialogs import Confirm

from tests.tui.pilot_helpers import ready, train_until_resumable, until
from tests.tui.test_app import status

app_service = pytest.importorskip("textual_serve.app_service")
download_manager = pytest.importorskip("textual_serve.download_manager")


async def close_the_page(app) -> None:
    """What reaches a served app when its page's websocket closes: textual-serve's AppService.stop
    writes a 'quit' meta packet to the app's stdin; the app's driver reads it in its input thread."""

    class Stdin:  # the app process's stdin, as AppService writes to it
        sent = b""

        def write(self, data: bytes) -> None:
            self.sent += data

        async def drain(self) -> None:
            pass

    service = app_service.AppService("phonetui", write_bytes=None, write_str=None, close=None,
                                     download_manager=download_manager.DownloadManager())
    stdin = service._stdin = Stdin()
    service._task = asyncio.create_task(asyncio.sleep(0))  # (start() leaves the task reading the app's output)
    await service.stop()
    driver = PageDriver.__new__(PageDriver)  # (its __init__ would take the test's stdin to read)
    driver._app = app

    def input_thread() -> None:  # WebDriver.run_input_thread, for the bytes it reads
        for packet_type, payload in ByteStream().feed(stdin.sent):
            driver._on_meta(packet_type, payload)

    thread = threading.Thread(target=input_thread)
    thread.start()
    thread.join()
    assert json.loads(stdin.sent[5:]) == {"type": "quit"}


async def test_a_closed_page_stops_the_run_saying_so_and_the_next_app_resumes_it(make_app) -> None:
    app = make_app("--epochs", "400", "--batch-size", "32")
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        await train_until_resumable(pilot)
        await close_the_page(app)
        await until(pilot, lambda: not app.is_running, timeout=30)
    (run,) = runs.list_runs(Path("runs"))
    n = run.status.epochs_done
    assert (run.state, run.status.message, run.status.outcome) == ("stopped", PAGE_CLOSED, runs.Outcome.STOPPED)
    assert 1 <= n < 400 and n == len(run.metrics())

    app = make_app("--epochs", "400", "--batch-size", "32")  # the next page (or a terminal) in the same runs folder
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        assert status(app) == (f"run {run.id} stopped when its browser page closed (after epoch {n}): "
                                    "F10 on it in History (F2) resumes it")
        assert app.main.history.table.selected().id == run.id
        await pilot.press("f2", "f10")  # History, then resume the run under the cursor
        await until(pilot, lambda: runs.open_run(run.path).status.message.startswith(f"resumed after epoch {n}"))
        await pilot.press("ctrl+q")  # a terminal user's quit still says the user stopped it
        await until(pilot, lambda: isinstance(app.screen, Confirm))
        await pilot.click("#confirm-yes")
        await until(pilot, lambda: not app.is_running, timeout=30)
    after = runs.open_run(run.path)
    assert (after.state, after.status.message, after.status.outcome) == ("stopped", "stopped by the user",
                                                                         runs.Outcome.STOPPED)


def stopped(config: RunConfig, message: str, status: str = "stopped", epochs: int = 2) -> runs.Run:
    """A run folder that ended as `status` with `message` after `epochs` epochs (no training)."""
    run = runs.create(Path("runs"), config, {"started": "2021-03-01 12:00:00"})
    run.write_status(status=status, epochs_done=epochs, message=message)
    run.release()
    return run


@pytest.mark.parametrize("case", ["closed", "first epoch", "user", "resumed", "older"])
async def test_the_next_app_tells_of_the_newest_run_only_if_its_page_closed_it(make_app, case: str) -> None:
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        config = app.main.form.config()
    closed = stopped(config, PAGE_CLOSED, epochs=0 if case == "first epoch" else 2)
    if case == "user":
        closed = stopped(config, "stopped by the user")
    elif case == "resumed":
        closed = stopped(config, "resumed after epoch 2", status="finished")
    elif case == "older":
        stopped(config, "stopped by the user")  # a newer run: the closed page is old news

    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        said = [line for line in app.main.query_one("#log").entries if "browser page" in line]
        if case == "closed":
            assert status(app) == (f"run {closed.id} stopped when its browser page closed (after epoch 2): "
                                        "F10 on it in History (F2) resumes it")
            assert app.main.history.table.selected().id == closed.id
        elif case == "first epoch":
            assert status(app) == (f"run {closed.id} stopped when its browser page closed before its first "
                                        "epoch ended: nothing to resume")
        else:
            assert said == [] and "browser page" not in status(app)


def test_only_an_app_that_serve_started_reads_a_closed_page(make_app, monkeypatch) -> None:
    serve = pytest.importorskip("phonetui.serve")
    command = serve.app_command({"runs": "runs"}, [], False)
    assert command.startswith(f"{serve.SERVED}=1 ") and command.endswith(" -m phonetui --runs runs")
    monkeypatch.setattr(textual.constants, "DRIVER", "textual.drivers.web_driver:WebDriver")  # as textual-serve sets it
    monkeypatch.delenv(serve.SERVED, raising=False)
    assert make_app().driver_class is WebDriver  # textual-web, say: a quit is a quit
    monkeypatch.setenv(serve.SERVED, "1")
    assert make_app().driver_class is PageDriver
    monkeypatch.setattr(textual.constants, "DRIVER", None)
    assert not issubclass(make_app().driver_class, WebDriver)  # a terminal
