"""Worker processes: `search --jobs N` and `sweep --jobs N` run their trials in processes of their
own, at most N at once, each with its share of the CPU threads.

Each worker is a `phonetui` command whose output lines come back, labelled, through `say`. A stop
(the flag set, or Ctrl+C here) is passed on to every running worker once, as SIGINT (SIGTERM where
this process got one), no new worker starts, and the running ones are waited for: each stops its
trial as an ordinary stopped run.
"""

from __future__ import annotations

import math
import os
import queue
import signal
import subprocess
import threading
from typing import Callable

from .events import Outcome, StopFlag
from .threads import usable_cores


def share(at_once: int) -> int:
    """The CPU threads of each of `at_once` workers: the usable cores split between them (at least 1)."""
    return max(1, math.floor(usable_cores()) // max(at_once, 1))


def run(commands: list[list[str]], at_once: int, say: Callable[[int, str], None], stop: threading.Event,
        env: dict[str, str] | None = None, started: Callable[[int, int], None] = lambda job, pid: None,
        ended: Callable[[int, int], None] = lambda job, code: None) -> list[int | None]:
    """Run the commands, at most `at_once` at a time in list order, passing their output lines to
    `say(job, line)` (job: the command's 1-based place in the list) as they come; `started(job,
    pid)` as each starts, `ended(job, exit code)` as each ends (negative: the signal that killed
    it). The exit codes, in the commands' order (None: never started, after a stop)."""
    threads = share(at_once)
    env = {**os.environ, **(env or {}), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    lines: queue.Queue = queue.Queue()
    procs: dict[int, subprocess.Popen] = {}
    codes: list[int | None] = [None] * len(commands)
    waiting, running, passed = list(range(len(commands))), 0, False
    while waiting or running:
        try:
            if stop.is_set() and not passed:
                _pass_on(procs.values(), stop)
                passed, waiting = True, []
            while waiting and running < at_once and not stop.is_set():
                i = waiting.pop(0)
                procs[i] = p = subprocess.Popen(commands[i], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                                env=env, start_new_session=True)  # a terminal's Ctrl+C comes through us
                threading.Thread(target=_pump, args=(i, p.stdout, lines), daemon=True).start()
                running += 1
                started(i + 1, p.pid)
            try:
                i, line = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                codes[i] = procs[i].wait()
                running -= 1
                ended(i + 1, codes[i])
            else:
                say(i + 1, line)
        except KeyboardInterrupt:
            stop.set()
    return codes


def _pump(i: int, stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put((i, line.rstrip("\n")))
    lines.put((i, None))


def _pass_on(procs, stop: threading.Event) -> None:
    by_signal = isinstance(stop, StopFlag) and stop.outcome == Outcome.STOPPED_BY_SIGNAL
    sig = signal.SIGTERM if by_signal else signal.SIGINT
    for p in procs:
        if p.poll() is None:
            p.send_signal(sig)


def how_it_ended(code: int) -> str:
    """'killed by SIGKILL', 'exit code 1'."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
