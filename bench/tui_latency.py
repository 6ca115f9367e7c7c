"""TUI responsiveness: time to the first frame, and key handling while a run trains.

    python bench/tui_latency.py [--data DIR] [--presses 40] [--json bench/tui_latency.json]

First frame: `phonetui` is started in a tmux pane (120x36) and the pane is polled every 10 ms until
the footer is drawn; the time from launch is reported (best and median of 5 launches).
Keys: the app runs under Textual's Pilot while `baseline` trains on the data (small epochs, so
charts and the live History redraw during the presses); F2 (switch tab) is pressed repeatedly, and
the time until the app has handled it and is idle again is reported (median, 95th percentile,
max), with the frames/s training reached meanwhile; then the run's whole epochs are timed against
the same run headless in the same process (what the CLI runs).
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


def first_frame_seconds(data_dir: Path, launches: int = 5) -> list[float]:
    """Seconds from launch until the footer ('Start') is on screen, per launch."""
    times = []
    exe = shutil.which("phonetui") or f"{sys.executable} -m phonetui"
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


EPOCHS = 3  # whole epochs timed in the app and headless


def headless_epoch_seconds(data_dir: Path) -> list[float]:
    """Seconds per epoch of the same `baseline` run without the app (what the CLI runs)."""
    from phonetui import presets, trainer

    cfg = presets.load_all([])["baseline"].with_training(epochs=EPOCHS)
    run = trainer.train(cfg, data.load(data_dir), Path(tempfile.mkdtemp()))
    return [m.seconds for m in run.metrics()]


async def key_latencies(data_dir: Path, presses: int) -> dict:
    from phonetui import trainer
    from phonetui.tui.app import PhonetuiApp
    from phonetui.tui.screens import MainScreen

    fps: list[float] = []
    args = parser().parse_args(["--data", str(data_dir), "--runs", tempfile.mkdtemp(), "--preset", "baseline",
                                "--epochs", str(EPOCHS)])
    seconds: dict[int, float] = {}  # by epoch (the hook can see a message twice)
    handled: list[float] = []

    switch_tab = MainScreen.action_switch_tab

    def timed(self: MainScreen) -> None:
        handled.append(time.perf_counter())
        switch_tab(self)

    MainScreen.action_switch_tab = timed  # bindings look actions up on the class
    app = PhonetuiApp(args)

    def hook(message) -> None:
        if type(message).__name__ == "TrainerEvent" and isinstance(message.event, trainer.Progress):
            fps.append(message.event.frames_per_s)
        if type(message).__name__ == "TrainerEvent" and isinstance(message.event, trainer.EpochEnd):
            seconds[message.event.metrics.epoch] = message.event.metrics.seconds

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
        while app.main.training:  # the run's remaining epochs, with charts and History redrawn after each
            await pilot.pause(0.05)
    lat.sort()
    return {"presses": presses, "median_ms": 1000 * statistics.median(lat), "p95_ms": 1000 * lat[int(0.95 * len(lat)) - 1],
            "max_ms": 1000 * lat[-1], "training_frames_per_s": statistics.median(fps),
            "app_epoch_s": [seconds[e] for e in sorted(seconds)]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path)
    p.add_argument("--presses", type=int, default=40)
    p.add_argument("--json", type=Path, default=Path("bench/tui_latency.json"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data or data.make_demo(Path(tmp) / "demo", 60_000, 20_000, seed=0)
        frames = first_frame_seconds(data_dir)
        keys = asyncio.run(key_latencies(data_dir, args.presses))
        keys["headless_epoch_s"] = headless_epoch_seconds(data_dir)
    result = {"first_frame_s": frames, "keys_while_training": keys}
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"first frame: best {min(frames):.2f} s, median {statistics.median(frames):.2f} s over {len(frames)} launches")
    print(f"F2 while training baseline ({keys['training_frames_per_s']:,.0f} frames/s): median {keys['median_ms']:.0f} ms, "
          f"p95 {keys['p95_ms']:.0f} ms, max {keys['max_ms']:.0f} ms over {keys['presses']} presses")
    app_s, cli_s = sum(keys["app_epoch_s"]), sum(keys["headless_epoch_s"])
    print(f"{EPOCHS} epochs of baseline: {app_s:.1f} s in the app, {cli_s:.1f} s headless (app/headless {app_s / cli_s:.3f})")


if __name__ == "__main__":
    main()
