"""`phonetui serve`: the app in a browser through textual-serve. A client speaks the browser's side
of its websocket (terminal output in, keys out) and starts a training with F5; a headless Chromium
test of the page itself runs where Debian's `chromium` is installed."""

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
import time
import urllib.request

import pytest

from phonetui import runs

pytest.importorskip("textual_serve")
aiohttp = pytest.importorskip("aiohttp")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(demo_dir, presets_dir, tmp_path):
    port = _free_port()
    cmd = [sys.executable, "-m", "phonetui", "serve", "--host", "127.0.0.1", "--port", str(port), "--data",
           str(demo_dir), "--presets", str(presets_dir), "--preset", "tiny", "--epochs", "2", "--runs",
           str(tmp_path / "runs")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            page = urllib.request.urlopen(url, timeout=2).read().decode()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"phonetui serve did not answer: {proc.communicate()[0]}")
            time.sleep(0.2)
    yield url, page, tmp_path / "runs"
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_the_served_app_starts_a_training_from_the_browser_s_side(served) -> None:
    url, page, runs_dir = served
    assert "<div>phonetui</div>" in page and "/ws" in page  # the page, titled, and its websocket

    async def drive() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(url.replace("http", "ws") + "/ws?width=120&height=36") as ws:
                seen, deadline = b"", time.monotonic() + 90
                while time.monotonic() < deadline and not list(runs_dir.glob(f"*/{runs.METRICS}")):
                    try:
                        msg = await ws.receive(timeout=1)
                        if msg.type == aiohttp.WSMsgType.BINARY:
                            seen += msg.data
                    except asyncio.TimeoutError:
                        pass
                    text = re.sub(rb"\x1b\[[0-9;?$]*[a-zA-Z~]", b"", seen)  # the characters drawn, without escapes
                    if b"F5 Start" not in text:  # the page says it has the focus: a blurred app's footer is empty
                        await ws.send_str(json.dumps(["focus"]))
                    if b"F5 starts one" in seen:  # the Training tab is drawn: F5 until data and torch are ready
                        await ws.send_str(json.dumps(["stdin", "\x1b[15~"]))
                text = re.sub(rb"\x1b\[[0-9;?$]*[a-zA-Z~]", b"", seen)
                assert b"F5 starts one" in text and b"F5 Start" in text, text[-500:]  # the tab and the footer

    asyncio.run(drive())
    (run,) = [runs.open_run(p.parent) for p in runs_dir.glob(f"*/{runs.METRICS}")]
    assert run.config.preset == "tiny" and run.config.training.epochs == 2


async def _in_chromium(url: str, runs_dir, profile) -> bytes:
    """Open `url` in headless Chromium and press F5 in its terminal (Chrome DevTools Protocol key
    events, as a user's) until a run folder has metrics; what the page received, without escapes."""
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
                return re.sub(rb"\x1b\[[0-9;?$]*[a-zA-Z~]", b"", b"".join(frames))
    finally:
        browser.kill()
        browser.wait()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no headless Chromium here (Debian: apt-get install chromium)")
def test_f5_in_headless_chromium_starts_a_training(served, tmp_path) -> None:
    url, _, runs_dir = served
    seen = asyncio.run(_in_chromium(url, runs_dir, tmp_path / "chromium"))
    assert b"F5 starts one" in seen and b"F5 Start" in seen  # the Training tab and the footer reached the page
    (run,) = [runs.open_run(p.parent) for p in runs_dir.glob(f"*/{runs.METRICS}")]
    assert run.config.preset == "tiny" and run.config.training.epochs == 2
