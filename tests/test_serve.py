"""`phonetui serve`: the app in a browser through textual-serve. A client speaks the browser's side
of its websocket (terminal output in, keys out) and starts a training with F5; closing the page stops
the run saying so, and the next page tells of it; a headless Chromium test of the page itself (a
tab that starts a training and is closed) runs where Debian's `chromium` is installed."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from phonetui import runs
from phonetui.tui.app import PAGE_CLOSED

pytestmark = pytest.mark.slow  # real servers, processes and a browser
pytest.importorskip("textual_serve")
aiohttp = pytest.importorskip("aiohttp")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """A running `phonetui serve`: its printed address (token included), the address without the
    token, the token, its runs folder, and every line it has printed."""

    def __init__(self, proc: subprocess.Popen, url: str, runs_dir) -> None:
        self.proc, self.url, self.runs_dir, self.lines = proc, url, runs_dir, []
        self.base, _, query = url.partition("/?")
        self.token = query.removeprefix("token=") or None
        self.ws = self.base.replace("http", "ws") + "/ws" + (f"/{self.token}" if self.token else "")
        threading.Thread(target=lambda: self.lines.extend(proc.stdout), daemon=True).start()

    def apps(self) -> list[int]:
        """The app processes the server runs now (its children)."""
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]


def _serve(demo_dir, presets_dir, tmp_path, *flags: str):
    port = _free_port()
    cmd = [sys.executable, "-m", "phonetui", "serve", "--port", str(port), "--data", str(demo_dir), "--presets",
           str(presets_dir), "--preset", "tiny", "--epochs", "2", "--runs", str(tmp_path / "runs"), *flags]
    if "--host" not in flags:
        cmd += ["--host", "127.0.0.1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = []
    while not any(line.startswith("serving the app at ") for line in first):
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"phonetui serve ended: {''.join(first)}")
        first.append(line)
    served = Served(proc, re.search(r"serving the app at (\S+) ", first[-1]).group(1), tmp_path / "runs")
    served.lines.extend(first)
    deadline = time.monotonic() + 60
    while True:
        try:
            served.page = urllib.request.urlopen(served.url, timeout=2).read().decode()
            return served
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"phonetui serve did not answer: {''.join(served.lines)}")
            time.sleep(0.2)


def _stop(served: Served) -> None:
    served.proc.send_signal(signal.SIGINT)
    try:
        served.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        served.proc.kill()
        served.proc.wait()


@pytest.fixture
def served(demo_dir, presets_dir, tmp_path):
    s = _serve(demo_dir, presets_dir, tmp_path)
    yield s
    _stop(s)


def test_the_served_app_starts_a_training_from_the_browser_s_side(served) -> None:
    page, runs_dir = served.page, served.runs_dir
    assert "<div>phonetui</div>" in page and f"/ws/{served.token}" in page  # the page, titled, and its websocket
    linked = re.findall(r'(?:src|href)="([^"]+)"', page) + re.findall(r'url\("([^"]+)"\)', page)
    assert linked and all(u.startswith(served.base + "/static/") for u in linked), linked  # nothing from the internet

    text = asyncio.run(_in_page(served, lambda text: bool(list(runs_dir.glob(f"*/{runs.METRICS}"))), f5=True))
    assert b"F5 starts one" in text and b"F5 Start" in text, text[-500:]  # the tab and the footer
    (run,) = [runs.open_run(p.parent) for p in runs_dir.glob(f"*/{runs.METRICS}")]
    assert run.config.preset == "tiny" and run.config.training.epochs == 2


def _drawn(seen: bytes) -> bytes:
    """The characters a page was sent to draw, without the escapes."""
    return re.sub(rb"\x1b\[[0-9;?$]*[a-zA-Z~]", b"", seen)


async def _in_page(served: Served, done, f5: bool = False, timeout: float = 90) -> bytes:
    """Open the page's websocket as the page does (and focus it), pressing F5 once the Training tab
    is drawn where `f5`, until `done(what was drawn)`; then close it, as closing the tab does.
    What was drawn."""
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(served.ws + "?width=120&height=36", origin=served.base) as ws:
            seen, deadline = b"", time.monotonic() + timeout
            while time.monotonic() < deadline and not done(_drawn(seen)):
                try:
                    msg = await ws.receive(timeout=1)
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        seen += msg.data
                except asyncio.TimeoutError:
                    pass
                if b"F5 Start" not in _drawn(seen):  # the page says it has the focus: a blurred app's footer is empty
                    await ws.send_str(json.dumps(["focus"]))
                if f5 and b"F5 starts one" in seen:  # the Training tab is drawn: F5 until data and torch are ready
                    await ws.send_str(json.dumps(["stdin", "\x1b[15~"]))
    return _drawn(seen)


def _until_stopped(served: Served) -> runs.Run:
    """The one run, once its app has stopped it and ended (textual-serve waits for the process)."""
    deadline = time.monotonic() + 60
    while True:
        (run,) = [runs.open_run(p.parent) for p in served.runs_dir.glob(f"*/{runs.METRICS}")]
        if run.state != "running" and not served.apps():
            return run
        assert time.monotonic() < deadline, f"{run.id} is still {run.state}; apps {served.apps()}"
        time.sleep(0.2)


def test_closing_the_page_stops_its_run_and_the_next_page_says_so(demo_dir, presets_dir, tmp_path) -> None:
    served = _serve(demo_dir, presets_dir, tmp_path, "--epochs", "400")
    try:
        asyncio.run(_in_page(served, lambda text: bool(list(served.runs_dir.glob(f"*/{runs.METRICS}"))), f5=True))
        run = _until_stopped(served)
        n = run.status.epochs_done
        assert (run.state, run.status.message, run.status.outcome) == ("stopped", PAGE_CLOSED, runs.Outcome.STOPPED)
        assert 1 <= n < 400
        line = f"run {run.id} stopped when its browser page closed (after epoch {n})".encode()
        assert line in asyncio.run(_in_page(served, lambda text: line in text))
    finally:
        _stop(served)


async def _in_chromium(url: str, runs_dir, profile) -> bytes:
    """Open `url` in headless Chromium and press F5 in its terminal (Chrome DevTools Protocol key
    events, as a user's) until a run folder has metrics, then close the tab; what the page received,
    without escapes."""
    port = _free_port()
    browser = subprocess.Popen(["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--remote-debugging-port={port}",
                                f"--user-data-dir={profile}", "--window-size=1280,900", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    async with http.put(f"http://127.0.0.1:{port}/json/new?{url}") as r:
                        page = await r.json()
                    break
                except aiohttp.ClientError:
                    assert time.monotonic() < deadline, "headless Chromium did not start"
                    await asyncio.sleep(0.2)
            async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                ids, frames = iter(range(1, 10**6)), []

                async def call(method: str, **params):
                    n = next(ids)
                    await ws.send_json({"id": n, "method": method, "params": params})
                    while True:
                        m = await ws.receive_json(timeout=30)
                        if m.get("method") == "Network.webSocketFrameReceived":
                            r = m["params"]["response"]
                            frames.append(base64.b64decode(r["payloadData"]) if r["opcode"] == 2 else r["payloadData"].encode())
                        if m.get("id") == n:
                            return m.get("result", {})

                await call("Network.enable")
                deadline = time.monotonic() + 120
                while not list(runs_dir.glob(f"*/{runs.METRICS}")):
                    assert time.monotonic() < deadline, "no run started from the browser"
                    body = await call("Runtime.evaluate", expression="document.body.className", returnByValue=True)
                    if "-first-byte" in body["result"].get("value", ""):  # the terminal is drawn: focus it, press F5
                        await call("Runtime.evaluate", expression="document.querySelector('.xterm-helper-textarea').focus()")
                        for kind in ("keyDown", "keyUp"):
                            await call("Input.dispatchKeyEvent", type=kind, key="F5", code="F5", windowsVirtualKeyCode=116)
                    await asyncio.sleep(1)
            async with http.get(f"http://127.0.0.1:{port}/json/close/{page['id']}") as r:
                assert r.status == 200, await r.text()
            return _drawn(b"".join(frames))
    finally:
        browser.kill()
        browser.wait()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no headless Chromium here (Debian: apt-get install chromium)")
def test_f5_in_headless_chromium_starts_a_training_that_closing_the_tab_stops(demo_dir, presets_dir, tmp_path) -> None:
    served = _serve(demo_dir, presets_dir, tmp_path, "--epochs", "400")
    try:
        seen = asyncio.run(_in_chromium(served.url, served.runs_dir, tmp_path / "chromium"))
        assert b"F5 starts one" in seen and b"F5 Start" in seen  # the Training tab and the footer reached the page
        run = _until_stopped(served)
        assert run.config.preset == "tiny" and run.config.training.epochs == 400
        assert (run.state, run.status.message) == ("stopped", PAGE_CLOSED)
    finally:
        _stop(served)


async def _handshake(url: str, **headers: str) -> int:
    """The HTTP status a websocket handshake to `url` gets (101: accepted)."""
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(url + "?width=80&height=24", headers=headers) as ws:
                await ws.close()
                return 101
        except aiohttp.WSServerHandshakeError as e:
            return e.status


def test_no_app_starts_without_the_token_or_from_another_origin(served) -> None:
    host = served.base.removeprefix("http://")
    wrong = served.ws.rsplit("/", 1)[0] + "/not-the-token"
    assert asyncio.run(_handshake(served.ws, Origin="http://evil.example")) == 403  # a page on another site
    assert asyncio.run(_handshake(served.base.replace("http", "ws") + "/ws", Origin=served.base)) == 403  # no token
    assert asyncio.run(_handshake(wrong, Origin=served.base)) == 403
    assert asyncio.run(_handshake(served.ws, Origin="http://evil.example:80", Host="evil.example")) == 403  # rebinding
    time.sleep(1)
    assert served.apps() == []  # none of them started an app process
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(served.base + "/", timeout=5)  # the page without the token
    assert e.value.code == 403 and b"open the address that `phonetui serve` printed" in e.value.read()
    assert any("refused GET /ws from 127.0.0.1: Origin http://evil.example is not this page's" in line
               for line in served.lines), served.lines
    assert asyncio.run(_handshake(served.ws, Origin=served.base)) == 101 and host  # the page's own origin is let in


def test_app_processes_are_bounded(demo_dir, presets_dir, tmp_path) -> None:
    served = _serve(demo_dir, presets_dir, tmp_path, "--max-apps", "1")
    try:
        async def two() -> tuple[int, int]:
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(served.ws + "?width=80&height=24", origin=served.base) as first:
                    deadline = time.monotonic() + 30
                    while not served.apps() and time.monotonic() < deadline:
                        await asyncio.sleep(0.1)
                    second = await _handshake(served.ws, Origin=served.base)
                    n = len(served.apps())
                    await first.close()
            return second, n

        second, n = asyncio.run(two())
        assert (second, n) == (503, 1)
    finally:
        _stop(served)


def test_listening_beyond_loopback_warns_and_no_token_is_a_choice(demo_dir, presets_dir, tmp_path) -> None:
    served = _serve(demo_dir, presets_dir, tmp_path, "--host", "0.0.0.0", "--no-token")
    try:
        assert served.token is None and served.url.endswith("/")
        assert any("phonetui: warning: listening on 0.0.0.0, beyond this machine: anyone who reaches port" in line
                   and "can train and delete runs (--no-token)" in line for line in served.lines), served.lines
    finally:
        _stop(served)
