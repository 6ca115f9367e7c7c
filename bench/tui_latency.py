"""TUI responsiveness: time to the first frame, and key handling while a run trains.

    python bench/tui_latency.py [--data DIR] [--presses 40] [--json bench/tui_latency.json]

First frame: `phonetui` is started in a tmux pane (120x36) and the pane is polled every 10 ms until
the footer is drawn; the time from launch is reported (best and median of 5 launches).
Keys: the app runs under Textual's Pilot while `baseline` trains on the data (small epochs, so
charts and the live History redraw during the presses); F2 (switch tab) is pressed repeatedly, and
the time until the app has handled it and is idle again is reported (median, 95th percentile,
max), with the frames/s training reached meanwhile.
Training speed: the same `baseline` run is started from the app (F5, then left open on the Training
tab with its live charts, as a user watching it would) and from the CLI (`phonetui train`), each in
its own 120x36 tmux pane, alternately, `--repeats` times; the runs' epoch times are compared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from phonetui import data
from phonetui.cli import parser
from phonetui.tui.settings import Settings


def _exe() -> str:
    return shutil.which("phonetui") or f"{sys.executable} -m phonetui"


def first_frame_seconds(data_dir: Path, launches: int = 5) -> list[float]:
    """Seconds from launch until the footer ('Start') is on screen, per launch."""
    times = []
    exe = _exe()
    for i in range(launches):
        name = f"phonetui-bench-{i}"
        start = time.perf_counter()
        subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "120", "-y", "36",
                        f"{exe} --data {data_dir} --runs {tempfile.mkdtemp()}"], check=True)
        try:
            while time.perf_counter() - start < 20:
                pane = subprocess.run(["tmux", "capture-pane", "-p", "-t", name], capture_output=True, text=True).stdout
                if "Start" in pane and "Export" in pane:
                    times.append(time.perf_counter() - start)
                    break
                time.sleep(0.01)
        finally:
            subprocess.run(["tmux", "kill-session", "-t", name], check=False)
        time.sleep(0.5)
    return times


EPOCHS = 3  # epochs of each timed run


def tmux_run_seconds(data_dir: Path, app: bool) -> float:
    """Seconds of the epochs of one `baseline` run, from the app (F5 pressed until the run starts,
    then left alone) or from the CLI, in a 120x36 tmux pane."""
    from phonetui import runs

    runs_dir = Path(tempfile.mkdtemp())
    flags = f"--data {data_dir} --runs {runs_dir} --preset baseline --epochs {EPOCHS}"
    name = f"phonetui-speed-{'app' if app else 'cli'}"
    subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "120", "-y", "36",
                    f"{_exe()} {flags}" if app else f"{_exe()} train {flags}"], check=True)
    try:
        deadline = time.time() + 900
        while time.time() < deadline:
            found = runs.list_runs(runs_dir)
            if found and found[0].status.status in ("finished", "failed", "stopped"):
                return sum(m.seconds for m in found[0].metrics())
            if app and not found:  # until the data and torch have loaded, F5 only says so
                subprocess.run(["tmux", "send-keys", "-t", name, "F5"], check=False)
            time.sleep(0.5)
        raise TimeoutError(f"{name}: the run did not end")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], check=False)
        shutil.rmtree(runs_dir, ignore_errors=True)


async def key_latencies(data_dir: Path, presses: int) -> dict:
    from phonetui import trainer
    from phonetui.tui.app import PhonetuiApp
    from phonetui.tui.screens import MainScreen

    fps: list[float] = []
    args = parser().parse_args(["--data", str(data_dir), "--runs", tempfile.mkdtemp(), "--preset", "baseline",
                                "--epochs", str(EPOCHS)])
    handled: list[float] = []

    switch_tab = MainScreen.action_switch_tab

    def timed(self: MainScreen) -> None:
        handled.append(time.perf_counter())
        switch_tab(self)

    MainScreen.action_switch_tab = timed  # bindings look actions up on the class
    app = PhonetuiApp(Settings.from_args(args))

    def hook(message) -> None:
        if type(message).__name__ == "TrainerEvent" and isinstance(message.event, trainer.Progress):
            fps.append(message.event.frames_per_s)

    async with app.run_test(size=(120, 36), message_hook=hook) as pilot:
        while app.main.devices is None or app.main.data is None:
            await pilot.pause(0.05)
        await pilot.press("f5")
        while not fps:
            await pilot.pause(0.05)
        lat = []
        for _ in range(presses):
            start = time.perf_counter()
            await pilot.press("f2")
            lat.append(handled[-1] - start)
            await pilot.pause(0.1)
        app.main.action_stop()
        while app.main.training:
            await pilot.pause(0.05)
    lat.sort()
    return {"presses": presses, "median_ms": 1000 * statistics.median(lat), "p95_ms": 1000 * lat[int(0.95 * len(lat)) - 1],
            "max_ms": 1000 * lat[-1], "training_frames_per_s": statistics.median(fps)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path)
    p.add_argument("--presses", type=int, default=40)
    p.add_argument("--parts", default="first-frame,keys,speed", help="what to measure (all three by default)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs from the app and from the CLI (3 each)")
    p.add_argument("--json", type=Path, default=Path("bench/tui_latency.json"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data or data.make_demo(Path(tmp) / "demo", 60_000, 20_000, seed=0)
        result = {}
        if "first-frame" in args.parts:
            result["first_frame_s"] = frames = first_frame_seconds(data_dir)
            print(f"first frame: best {min(frames):.2f} s, median {statistics.median(frames):.2f} s over {len(frames)} launches")
        if "keys" in args.parts:
            result["keys_while_training"] = keys = asyncio.run(key_latencies(data_dir, args.presses))
            print(f"F2 while training baseline ({keys['training_frames_per_s']:,.0f} frames/s): median {keys['median_ms']:.0f} ms, "
                  f"p95 {keys['p95_ms']:.0f} ms, max {keys['max_ms']:.0f} ms over {keys['presses']} presses")
        if "speed" in args.parts:
            result["training_speed"] = speed = {"app_s": [], "cli_s": []}
            for _ in range(args.repeats):
                speed["cli_s"].append(tmux_run_seconds(data_dir, app=False))
                speed["app_s"].append(tmux_run_seconds(data_dir, app=True))
            app_s, cli_s = statistics.median(speed["app_s"]), statistics.median(speed["cli_s"])
            print(f"{EPOCHS} epochs of baseline, median of {args.repeats}: {app_s:.1f} s from the app, {cli_s:.1f} s from the "
                  f"CLI (app/CLI {app_s / cli_s:.3f}; app {', '.join(f'{v:.1f}' for v in speed['app_s'])}; "
                  f"CLI {', '.join(f'{v:.1f}' for v in speed['cli_s'])})")
    args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
