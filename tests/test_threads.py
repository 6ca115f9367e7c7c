"""CPU threads: the wait policy set before torch loads, the count chosen for a run and followed as it trains."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tomllib

import pytest
import torch

from phonetui import runs, threads, trainer


def test_the_wait_policy_is_libgomp_s_unless_the_user_chose_and_is_recorded(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    assert threads.wait_policy() == "libgomp's default (spin, then sleep)"
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    assert threads.wait_policy() == "OMP_WAIT_POLICY=PASSIVE (set by the user)"


@pytest.mark.parametrize("whole, others, n", [
    (2, 0.0, 2), (2, 0.45, 2), (2, 0.55, 1), (2, 1.0, 1), (2, 2.0, 1), (2, 5.0, 1),
    (8, 0.0, 8), (8, 2.0, 6), (8, 2.4, 6), (8, 2.6, 5), (8, 7.9, 1), (1, 0.0, 1),
])
def test_auto_takes_the_cores_other_processes_leave(whole, others, n):
    assert threads.choose("auto", 1e12, cores=whole, others=others).threads == n


def test_auto_says_why_and_a_number_is_taken_as_asked():
    c = threads.choose("auto", 1e12, cores=4, others=1.04)
    assert (c.threads, c.why) == (3, "auto: 4 usable cores, 1.0 busy with other processes -> 3")
    assert threads.choose("auto", 1e12, cores=4).why == "auto: 4 usable cores -> 4"
    assert threads.choose("3", 10, cores=1, others=9.0) == threads.Choice(3, "threads = 3 (asked)")


def test_a_small_model_and_batch_get_fewer_threads():
    # one thread per MACS_PER_THREAD multiply-adds in a step: 3 threads' worth on 16 cores
    c = threads.choose("auto", 3.5 * threads.MACS_PER_THREAD, cores=16, others=0.0)
    assert c.threads == 3 and "the model and batch use 3" in c.why
    assert threads.choose("auto", 10, cores=16, others=0.0).threads == 1


def test_usable_cores_honour_the_affinity_and_omp_num_threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads.usable_cores() <= len(os.sched_getaffinity(0))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # a --jobs worker's share, or the user's choice
    assert threads.usable_cores() == 1


class FakeSampler:
    def __init__(self, loads):
        self.loads = list(loads)
        self.last = (time.monotonic() - 1, 0.0, 0.0)

    def others(self):
        return self.loads.pop(0) if self.loads else None


def test_the_governor_follows_the_load_as_the_run_trains(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 4.0)
    calls = []
    gov = threads.Governor("auto", 1e12, calls.append, FakeSampler([0.0, 2.0, 2.1, 0.1]))
    assert calls == [4] and gov.threads == 4
    now = time.monotonic()
    gov.tick(now)  # too soon after the start: no look
    for i in range(1, 4):
        gov.tick(now + i * threads.GOVERN_EVERY_S)
    assert calls == [4, 2, 4]  # 2.1 busy: still 2 (no change, no call)
    assert gov.record()["threads_range"].startswith("2-4")
    fixed = threads.Governor("3", 1e12, calls.append, FakeSampler([3.0] * 5))
    fixed.tick(now + 10)
    assert calls[-1] == 3 and fixed.threads == 3 and "threads_range" not in fixed.record()


@pytest.mark.slow
def test_the_sampler_sees_a_busy_process_beside_this_one():
    sampler = threads.CpuSampler()
    busy = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 1.5\nwhile time.time() < end: pass"])
    try:
        time.sleep(1.0)
        others = sampler.others()
    finally:
        busy.kill()
        busy.wait()
    assert others is not None and others >= 0.5  # a whole core's busy loop (or more of others where it got less)


def test_a_run_records_its_threads_and_trains_with_them(tiny, demo, tmp_path):
    seen = []
    listen = lambda e: seen.append(torch.get_num_threads()) if isinstance(e, trainer.EpochEnd) else None  # noqa: E731
    before = torch.get_num_threads()
    try:
        run = trainer.train(tiny.with_training(epochs=1, threads="1"), demo, tmp_path, listen)
    finally:
        torch.set_num_threads(before)
    record = tomllib.loads((run.path / runs.CONFIG).read_text())
    assert record["training"]["threads"] == "1" and record["run"]["threads"] == 1
    assert record["run"]["threads_why"] == "threads = 1 (asked)" and seen == [1]
    assert record["run"]["omp_wait"] == threads.wait_policy()
    auto = trainer.train(tiny.with_training(epochs=1), demo, tmp_path)
    assert auto.record["threads_why"].startswith("auto: ") and 1 <= auto.record["threads"] <= os.cpu_count()
