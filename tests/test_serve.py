"""`phonetui serve`: the app in a browser through textual-serve. A client speaks the browser's side
of its websocket (terminal output in, keys out) and starts a training with F5; a headless Chromium
test of the page itself runs where Debian's `chromium` is installed."""

from __future__ import annotations

import asyncio
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


@pytest.fixture
def served(demo_dir, presets_dir, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
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


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no headless Chromium here (Debian: apt-get install chromium)")
def test_the_page_loads_in_headless_chromium(served) -> None:
    url, _, _ = served
    dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=8000",
                          "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    assert "textual-terminal" in dom or "phonetui" in dom
