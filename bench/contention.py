"""Training speed on a busy CPU: one epoch alone, beside busy processes, and beside a second training.

    python bench/contention.py                                   # the default matrix, 2 repeats
    python bench/contention.py --repeats 3 --settings before,after --conditions alone,busy2,pair

Each timed unit is one real `phonetui train --preset baseline --epochs 1` process on a simulated
demo set (150,000 rows, batch 256 by default: the case issue 27 measured). What is timed is the
whole process, from launch to exit, and the epoch's own seconds from the run's metrics.csv.

Conditions:
- alone: nothing else started by this script;
- busyN: N single-thread CPU-bound Python loops run for the whole of the timed process;
- pair: two identical trainings started together; the unit's time is the later one's (both done).

Settings are the code and environment of the timed processes:
- before: phonetui as it was before issue 27 (`--before REF`, 88b2a31 by default, checked out in a
  temporary git worktree): torch's threads and libgomp's wait policy as inherited, i.e. every core,
  waiting threads spinning 300,000 rounds before they sleep;
- after: this checkout with its defaults (`threads = "auto"`; libgomp's wait policy left as it is);
- passive, one, spin10k, spin1k: the `before` code with OMP_WAIT_POLICY=PASSIVE, OMP_NUM_THREADS=1, or
  libgomp's spin count cut to 10,000 or 1,000 rounds (the alternatives that were measured).

Settings and conditions are interleaved (each repeat runs every pair once, in a rotated order), so
drifts of the shared machine's load hit every setting alike. Results go to
bench/results-contention.json, with the ratio of each condition's median to the same setting's
median alone.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from phonetui import data

SETTINGS: dict[str, tuple[str, dict[str, str]]] = {  # name: (code: "before" or "after", environment)
    "before": ("before", {}),
    "after": ("after", {}),
    "passive": ("before", {"OMP_WAIT_POLICY": "PASSIVE"}),
    "one": ("before", {"OMP_NUM_THREADS": "1"}),
    "spin10k": ("before", {"GOMP_SPINCOUNT": "10000"}),
    "spin1k": ("before", {"GOMP_SPINCOUNT": "1000"}),
}
CODE: dict[str, Path] = {"after": Path(__file__).resolve().parent.parent}  # "before": the worktree main() makes
BUSY = ("import os, time\nparent, end = os.getppid(), time.time() + 3600\n"  # a CPU-bound loop that ends with this script
        "while time.time() < end and os.getppid() == parent:\n    for _ in range(100_000): pass\n")


def _env(code: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
                                                            "MKL_NUM_THREADS", "PHONETUI_GOMP", "_PHONETUI_SET")}
    return env | {"PYTHONPATH": str(code)} | extra


def _epoch_seconds(runs_dir: Path) -> float:
    metrics = sorted(runs_dir.glob("*/metrics.csv"))
    with open(metrics[-1]) as f:
        return float(list(csv.DictReader(f))[0]["seconds"])


def _train(setting: str, data_dir: Path, batch: int, count: int) -> list[tuple[float, float]]:
    """`count` identical trainings started together: (whole-process seconds, epoch seconds) each."""
    code, env = SETTINGS[setting]
    folders = [Path(tempfile.mkdtemp(prefix="phonetui-cont-")) for _ in range(count)]
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "phonetui", "train", "--data", str(data_dir), "--runs", str(f),
                               "--preset", "baseline", "--epochs", "1", "--batch-size", str(batch), "--val-ratio", "0.1"],
                              cwd=CODE[code], env=_env(CODE[code], env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
             for f in folders]
    out = []
    for p, f in zip(procs, folders):
        _, err = p.communicate()
        wall = time.perf_counter() - start
        if p.returncode:
            raise SystemExit(f"{setting}: phonetui train exited {p.returncode}: {err.strip()[-300:]}")
        out.append((wall, _epoch_seconds(f)))
    return out


def unit(setting: str, condition: str, data_dir: Path, batch: int) -> dict:
    busy = []
    if condition.startswith("busy"):
        busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(int(condition[4:]))]
        time.sleep(0.5)
    try:
        results = _train(setting, data_dir, batch, 2 if condition == "pair" else 1)
    finally:
        for p in busy:  # end what we started, by its pid
            p.kill()
            p.wait()
    return {"setting": setting, "condition": condition, "process_s": max(w for w, _ in results),
            "epoch_s": max(e for _, e in results)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--settings", default="before,after")
    p.add_argument("--conditions", default="alone,busy2,pair")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--rows", type=int, default=150_000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--before", default="88b2a31", help="the commit the `before` code is checked out at (88b2a31)")
    p.add_argument("--json", type=Path, default=Path("bench/results-contention.json"))
    args = p.parse_args()
    args.json = args.json.resolve()
    settings, conditions = args.settings.split(","), args.conditions.split(",")
    for s in settings:
        if s not in SETTINGS:
            raise SystemExit(f"--settings: unknown {s!r} (known: {', '.join(SETTINGS)})")
    tmp = Path(tempfile.mkdtemp(prefix="phonetui-contention-"))
    data_dir = data.make_demo(tmp / "data", train_rows=args.rows, test_rows=2000, seed=0)
    if any(SETTINGS[s][0] == "before" for s in settings):
        CODE["before"] = tmp / "before"
        subprocess.run(["git", "-C", str(CODE["after"]), "worktree", "add", "--detach", "-q", str(CODE["before"]),
                        args.before], check=True)
    try:
        units = _measure(args, settings, conditions, data_dir)
    finally:
        if "before" in CODE:
            subprocess.run(["git", "-C", str(CODE["after"]), "worktree", "remove", "--force", str(CODE["before"])],
                           check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    _report(args, settings, conditions, units)


def _measure(args, settings: list[str], conditions: list[str], data_dir: Path) -> list[dict]:
    pairs = [(s, c) for c in conditions for s in settings]
    units = []
    for r in range(args.repeats):
        order = pairs[r % len(pairs):] + pairs[:r % len(pairs)]
        for s, c in order:
            u = unit(s, c, data_dir, args.batch_size)
            units.append(u | {"repeat": r})
            print(f"repeat {r}: {s:8s} {c:6s} process {u['process_s']:6.1f} s  epoch {u['epoch_s']:6.1f} s", flush=True)
    return units


def _report(args, settings: list[str], conditions: list[str], units: list[dict]) -> None:
    summary = {}
    for s in settings:
        alone = [u["process_s"] for u in units if u["setting"] == s and u["condition"] == "alone"]
        for c in conditions:
            vals = [u["process_s"] for u in units if u["setting"] == s and u["condition"] == c]
            entry = {"process_s": sorted(vals), "median_s": statistics.median(vals)}
            if alone:
                entry["x_alone"] = round(statistics.median(vals) / statistics.median(alone), 2)
            summary.setdefault(s, {})[c] = entry
    print("\n| condition | " + " | ".join(settings) + " |\n|---|" + "---:|" * len(settings))
    for c in conditions:
        cells = []
        for s in settings:
            e = summary[s][c]
            cells.append(f"{min(e['process_s']):.1f}-{max(e['process_s']):.1f} s"
                         + (f" ({e['x_alone']:.2f}x)" if c != "alone" and "x_alone" in e else ""))
        print(f"| {c} | " + " | ".join(cells) + " |")
    result = {"command": " ".join(["python", *sys.argv]), "before": args.before, "cpus": len(os.sched_getaffinity(0)),
              "machine": platform.processor() or platform.machine(), "rows": args.rows, "batch_size": args.batch_size,
              "date": time.strftime("%Y-%m-%d %H:%M"), "summary": summary, "units": units}
    args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
