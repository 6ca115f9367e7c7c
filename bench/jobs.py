"""Parallel trials: `phonetui search --jobs N` against the same trials one after another.

    python bench/jobs.py                          # baseline and tiny, 2 trials, 2 jobs, simulated demo set
    python bench/jobs.py --presets baseline --trials 4 --jobs 2 --epochs 3

For each preset it runs the real command twice on one new SQLite study each: `--jobs 1` (the
trials in turn, each with all the CPU threads) and `--jobs N` (N worker processes at once, each
with its share of the threads), and reports the wall time of each and their ratio. Fewer than 4
trials are never pruned (the median pruner waits for 3), so both runs do the same work.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from phonetui import data


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--presets", default="tiny,baseline")
    p.add_argument("--trials", type=int, default=2)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--rows", type=int, default=100_000, help="simulated demo train rows (100,000)")
    p.add_argument("--json", type=Path, default=Path("bench/results-jobs.json"))
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="phonetui-jobs-"))
    demo = data.make_demo(tmp / "data", train_rows=args.rows, test_rows=2000, seed=0)
    presets = tmp / "presets"
    presets.mkdir()
    (presets / "tiny.toml").write_text('name = "tiny"\ndescription = "128-64 ReLU + BatchNorm"\n[model]\n'
                                       'hidden = [128, 64]\nbatchnorm = true\n[training]\nbatch_size = 128\n')
    result = {"cpus": len(os.sched_getaffinity(0)), "rows": args.rows, "epochs": args.epochs, "trials": args.trials,
              "jobs": args.jobs, "cases": []}
    print("| preset | trials | --jobs 1 (s) | --jobs %d (s) | speed-up |\n|---|---:|---:|---:|---:|" % args.jobs)
    for preset in args.presets.split(","):
        seconds = {}
        for jobs in (1, args.jobs):
            runs = tmp / f"runs-{preset}-{jobs}"
            seconds[jobs] = timed([sys.executable, "-m", "phonetui", "search", "--data", str(demo), "--presets",
                                   str(presets), "--preset", preset, "--lr", "1e-3:1e-2", "--epochs", str(args.epochs),
                                   "--trials", str(args.trials), "--jobs", str(jobs), "--runs", str(runs)])
        ratio = seconds[1] / seconds[args.jobs]
        result["cases"].append({"preset": preset, "sequential_s": seconds[1], "parallel_s": seconds[args.jobs],
                                "speedup": ratio})
        print(f"| {preset} | {args.trials} | {seconds[1]:.1f} | {seconds[args.jobs]:.1f} | {ratio:.2f}x |", flush=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
