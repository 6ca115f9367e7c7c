"""CPU threads for training: how many intra-op threads a run uses, and why.

Torch's CPU kernels split each operation over libgomp's OpenMP threads, and every split ends at a
barrier where a thread that has finished its share spins (300,000 rounds, about a millisecond)
before it sleeps, on the chance that its partners finish soon. Torch starts one thread per core
whatever else runs, so on a shared machine (a lab server, a laptop running a browser, a second
training beside this one) a partner is often descheduled, and the spinning burns the very core it
waits for: one epoch took 3.6-4.1x its time alone beside two busy processes on 2 cores, and two
trainings together 4-5x (bench/contention.py).

What fixes it is a thread count that fits the machine, not a shorter spin: `choose()` decides the
count for a run from the cores this process may use (affinity, a cgroup quota, OMP_NUM_THREADS),
what the model and batch can use, and how busy those cores are with other processes, and
`Governor` looks again every GOVERN_EVERY_S while the run trains, so a run started on a busy
machine speeds up when it clears and two runs started together settle on a share each. With no
more threads than free cores, a spinning thread waits on a core no one else wants. A shorter spin
(OMP_WAIT_POLICY=PASSIVE, or GOMP_SPINCOUNT=1000 or less) also ends the cliff, but costs the quiet
machine 13-25% of its speed in the same measurement, so libgomp's wait policy is left as it is
(a user's OMP_WAIT_POLICY or GOMP_SPINCOUNT is kept, and recorded with the run).
"""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

GOVERN_EVERY_S = 2.0  # how often a training run looks at the machine again
FIRST_LOOK_S = 0.1  # the shortest first look (10 of /proc/stat's ticks per core)
MACS_PER_THREAD = 1 << 20  # below this many multiply-adds per thread in a step, splitting costs more than it saves
_AUTO = "auto"
_N_RE = re.compile(r"^[1-9][0-9]{0,3}\Z")


def wait_policy() -> str:
    """How libgomp's idle threads wait in this process, as recorded with each run."""
    chosen = [f"{k}={os.environ[k]}" for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in os.environ]
    return (", ".join(chosen) + " (set by the user)") if chosen else "libgomp's default (spin, then sleep)"


def check(value: str) -> bool:
    """Whether `value` is a valid `threads` setting: auto, or a count from 1 to 9999."""
    return value == _AUTO or bool(_N_RE.match(value))


def usable_cores() -> float:
    """The cores this process may run on: its CPU affinity, capped by a cgroup v2 CPU quota and by
    OMP_NUM_THREADS where it is set (by the user, or by `--jobs` for each worker's share)."""
    cores = float(len(os.sched_getaffinity(0)))
    omp = os.environ.get("OMP_NUM_THREADS", "")
    if omp.isdigit() and int(omp) > 0:
        cores = min(cores, float(omp))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(int(quota) / int(period), 1.0))
    except (OSError, ValueError):
        pass
    return cores


class CpuSampler:
    """How many of this process's cores other processes keep busy, from /proc/stat's per-CPU
    counters minus this process's own CPU time, between two looks."""

    def __init__(self) -> None:
        self.cpus = {f"cpu{i}" for i in os.sched_getaffinity(0)}
        self.hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.last = self._read()

    def _read(self) -> tuple[float, float, float] | None:
        try:
            busy = 0
            with open("/proc/stat") as f:
                for line in f:
                    name, *ticks = line.split()
                    if name in self.cpus:
                        t = [int(v) for v in ticks[:8]]
                        busy += sum(t) - t[3] - t[4]  # all but idle and iowait (steal counts: not ours to use)
            return time.monotonic(), busy / self.hz, time.process_time()
        except (OSError, ValueError, IndexError):
            return None

    def others(self) -> float | None:
        """Cores' worth of CPU time other processes used since the last look (None where /proc/stat
        cannot be read, or too little time has passed to tell)."""
        now = self._read()
        last, self.last = self.last, now
        if now is None or last is None or now[0] - last[0] < 0.1:
            return None
        wall = now[0] - last[0]
        return max(0.0, ((now[1] - last[1]) - (now[2] - last[2])) / wall)


def model_cap(macs_per_step: float) -> int:
    """The threads a step of this many multiply-adds can use: one per MACS_PER_THREAD."""
    return max(1, int(macs_per_step // MACS_PER_THREAD))


def count(n: int) -> str:
    """'1 thread', '4 threads'."""
    return f"{n} thread{'s' * (n != 1)}"


@dataclass(frozen=True)
class Choice:
    threads: int
    why: str


def choose(setting: str, macs_per_step: float, cores: float | None = None, others: float | None = None) -> Choice:
    """The intra-op thread count of a run and the reason, for `threads = setting` ("auto" or N)."""
    if setting != _AUTO:
        return Choice(int(setting), f"threads = {setting} (asked)")
    cores = usable_cores() if cores is None else cores
    whole = max(1, math.floor(cores))
    cap = model_cap(macs_per_step)
    n, parts = _auto(whole, cap, others), [f"{whole} usable core{'s' * (whole != 1)}"]
    if others is not None:
        parts.append(f"{others:.1f} busy with other processes")
    if cap < whole:
        parts.append(f"the model and batch use {cap}")
    return Choice(n, f"auto: {', '.join(parts)} -> {n}")


def _auto(whole: int, cap: int, others: float | None) -> int:
    """Threads for `whole` usable cores, a model that can use `cap`, and `others` cores kept busy by
    other processes: the cores they leave free, to the nearest whole core, never fewer than 1. A
    thread more than the free cores does not add speed, it waits at every operation's barrier for
    a partner the scheduler has given to another process."""
    free = whole if others is None else whole - others
    return max(1, min(whole, cap, math.floor(free + 0.5)))


class Governor:
    """Keeps an auto run's thread count fitted to the machine: `tick()` between batches looks at the
    other processes' CPU use every GOVERN_EVERY_S and sets torch's threads when the count should
    change (from the training thread, where OpenMP keeps it). A fixed count is never changed."""

    def __init__(self, setting: str, macs_per_step: float, set_threads: Callable[[int], None],
                 sampler: CpuSampler | None = None) -> None:
        self.auto = setting == _AUTO
        self.sampler = sampler or (CpuSampler() if self.auto else None)
        self.whole = max(1, math.floor(usable_cores()))
        self.cap = model_cap(macs_per_step)
        self.set_threads = set_threads
        others = None
        if self.auto:
            wait = FIRST_LOOK_S - (time.monotonic() - self.sampler.last[0]) if self.sampler.last else 0
            time.sleep(max(0.0, wait))  # the first look spans the run's set-up, and at least FIRST_LOOK_S
            others = self.sampler.others()
        self.choice = choose(setting, macs_per_step, cores=self.whole, others=others)
        self.threads = self.choice.threads
        self.seen = {self.threads}
        self.next = time.monotonic() + GOVERN_EVERY_S
        set_threads(self.threads)

    def tick(self, now: float) -> None:
        if not self.auto or now < self.next:
            return
        self.next = now + GOVERN_EVERY_S
        others = self.sampler.others()
        if others is None:
            return
        n = _auto(self.whole, self.cap, others)
        if n != self.threads:
            self.threads = n
            self.seen.add(n)
            self.set_threads(n)

    def record(self) -> dict[str, object]:
        """What config.toml keeps: the count it started with and why, and the range it ran at."""
        out: dict[str, object] = {"threads": self.choice.threads, "threads_why": self.choice.why,
                                  "omp_wait": wait_policy()}
        if len(self.seen) > 1:
            out["threads_range"] = f"{min(self.seen)}-{max(self.seen)} (auto: changed with the other processes' load)"
        return out
