"""Where a Ctrl+C right after `phonetui train` starts still gives Python's traceback.

    python bench/ctrl_c_window.py [--delays 0.00:0.20:0.01] [--repeats 1]

Runs the installed `phonetui train` (the launcher pip writes, as a user types it) on a small
simulated demo set, sends SIGINT after each delay, and prints, per delay, whether stderr held a
traceback (and where: the last file of it) or phonetui's one line. Before phonetui's first line
(the top of phonetui/__main__.py, which holds the signals) only Python runs: its start-up and the
launcher's `import re, sys`; that window is what is left.
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from phonetui import data


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--delays", default="0.00:0.20:0.01", help="FROM:TO:STEP seconds (0.00:0.20:0.01)")
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args()
    lo, hi, step = map(float, args.delays.split(":"))
    exe = shutil.which("phonetui") or str(Path(sys.executable).parent / "phonetui")
    tmp = Path(tempfile.mkdtemp(prefix="phonetui-ctrlc-"))
    demo = data.make_demo(tmp / "demo", 5000, 500, seed=0)
    try:
        delay, worst = lo, None
        while delay <= hi + 1e-9:
            for _ in range(args.repeats):
                proc = subprocess.Popen([exe, "train", "--data", str(demo), "--preset", "baseline", "--epochs", "1",
                                         "--runs", str(tmp / "runs")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
                time.sleep(delay)
                proc.send_signal(signal.SIGINT)
                _, err = proc.communicate(timeout=120)
                if "Traceback" in err:
                    where = re.findall(r'File "([^"]+)"', err)[-1:]
                    worst = delay
                    print(f"{delay:.3f} s: exit {proc.returncode}, Python's traceback (in {where[0] if where else '?'})")
                else:
                    print(f"{delay:.3f} s: exit {proc.returncode}, {(err.strip().splitlines() or ['(nothing)'])[-1]}")
            delay += step
        print(f"latest delay with a traceback: {worst:.3f} s" if worst is not None else "no traceback at any delay")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
