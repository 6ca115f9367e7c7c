"""The trainer: learns, emits events, saves the best model, stops when asked, fails readably."""

from __future__ import annotations

import csv
import dataclasses
import threading

import numpy as np
import pytest
import torch

from phonetui import checkpoint, data, device, models, runs, trainer
from phonetui.config import parse_model
from phonetui.step import plan
from phonetui.errors import PhonetuiError
from tests.conftest import TINY, write_set


def run_collect(cfg, demo, tmp_path, cancel=None, on=None):
    events = []

    def listen(e):
        events.append(e)
        if on:
            on(e)

    run = trainer.train(cfg, demo, tmp_path / "runs", listen, cancel)
    return run, events


def test_learns_well_above_chance_and_records_everything(tiny, demo, tmp_path):
    run, events = run_collect(tiny, demo, tmp_path)
    kinds = [type(e).__name__ for e in events if not isinstance(e, trainer.Progress)]
    assert kinds[0] == "RunStarted" and kinds[-1] == "Finished" and kinds.count("EpochEnd") == 3
    majority = np.bincount(demo.train_y[demo.n_train(0.2):]).max() / (len(demo.train_y) - demo.n_train(0.2))
    best = run.status.best_val_acc
    assert best > majority + 0.25, (best, majority)
    assert run.status.status == "finished" and run.status.epochs_done == 3
    with open(run.path / runs.METRICS) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", "train_acc", "train_loss", "val_acc", "val_loss", "lr", "seconds", "val_acc_raw",
                             "gain_lo", "gain_hi"]
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert max(float(r["val_acc"]) for r in rows) == pytest.approx(best, abs=1e-6)
    again = runs.open_run(run.path)
    assert again.config == tiny and again.record["device"] == "cpu" and again.record["torch"] == torch.__version__
    assert again.record["demo_data"] == "simulated"
    assert not list(run.path.glob(".*.tmp"))


def test_trains_on_course_data_that_is_not_a_demo_set(tiny, tmp_path):
    real = data.load(write_set(tmp_path / "timit_11", rows=400))
    run = trainer.train(tiny.with_training(epochs=1), real, tmp_path / "runs")
    assert run.status.status == "finished" and runs.open_run(run.path).record["demo_data"] == "none"


def test_progress_events_within_an_epoch(tiny, demo, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "PROGRESS_EVERY_S", 0.0)
    _, events = run_collect(dataclasses.replace(tiny, training=dataclasses.replace(tiny.training, epochs=1)),
                            demo, tmp_path)
    progress = [e for e in events if isinstance(e, trainer.Progress)]
    assert len(progress) >= 10
    assert [p.frames for p in progress] == sorted(p.frames for p in progress)
    assert progress[-1].frames <= progress[-1].total == demo.n_train(0.2)
    assert all(p.frames_per_s > 0 for p in progress)


def test_same_seed_same_metrics(tiny, demo, tmp_path):
    tiny = tiny.with_training(threads="2")  # bit for bit needs the same thread count (auto's follows the load)
    a, _ = run_collect(tiny, demo, tmp_path)
    b, _ = run_collect(tiny, demo, tmp_path)
    strip = lambda r: [dataclasses.replace(m, seconds=0) for m in r.metrics()]  # noqa: E731
    assert strip(a) == strip(b)
    c, _ = run_collect(tiny.with_training(seed=1), demo, tmp_path)
    assert strip(c) != strip(a)


def test_best_checkpoint_round_trip(tiny, demo, tmp_path):
    run, events = run_collect(tiny, demo, tmp_path)
    saved = [e for e in events if isinstance(e, trainer.BestSaved)]
    assert saved and saved[-1].epoch == run.status.best_epoch
    state = torch.load(run.path / runs.CHECKPOINT, weights_only=True)
    model = models.build(parse_model(state["model"]), state["input_dim"])
    model.load_state_dict(state["state_dict"])
    model.eval()
    n = demo.n_train(0.2)
    with torch.no_grad():
        acc = (model(torch.from_numpy(demo.train_x[n:])).argmax(1).numpy() == demo.train_y[n:]).mean()
    assert acc == pytest.approx(state["val_acc"], abs=1e-6) == pytest.approx(run.status.best_val_acc, abs=1e-6)


def test_no_validation_keeps_the_last_epoch(tiny, demo, tmp_path):
    run, events = run_collect(tiny.with_training(val_ratio=0.0, epochs=2), demo, tmp_path)
    assert all(m.val_acc is None for m in run.metrics())
    assert [e.epoch for e in events if isinstance(e, trainer.BestSaved)] == [1, 2]
    assert trainer.log_line(run.metrics()[0], 2).startswith("[001/002] Train Acc:")
    assert "Val" not in trainer.log_line(run.metrics()[0], 2)


def test_cancel_between_batches_keeps_the_best_model(tiny, demo, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "PROGRESS_EVERY_S", 0.0)
    cancel = threading.Event()

    def on(e):
        if isinstance(e, trainer.Progress) and e.epoch == 2:
            cancel.set()

    run, events = run_collect(tiny.with_training(epochs=50), demo, tmp_path, cancel, on)
    assert isinstance(events[-1], trainer.Cancelled)
    assert run.status.status == "stopped" and run.status.epochs_done == 1
    assert (run.path / runs.CHECKPOINT).is_file() and len(run.metrics()) == 1
    stalled = [e for e in events if isinstance(e, trainer.Progress) and e.epoch == 2]
    assert len(stalled) == 1  # stopped at the very next batch


@pytest.mark.parametrize("change, words", [
    ({"batch_size": 100_000}, ["training.batch_size", "larger than"]),
    ({"batch_size": 1}, ["BatchNorm"]),
    ({"device": "cuda:7"}, ["training.device", "cuda:7"]),
])
def test_impossible_configs_are_refused_before_a_run_exists(tiny, demo, tmp_path, change, words):
    with pytest.raises(PhonetuiError) as e:
        trainer.train(tiny.with_training(**change), demo, tmp_path / "runs")
    assert all(w in str(e.value) for w in words)
    assert not (tmp_path / "runs").exists()


def test_failure_inside_the_loop_is_one_line_and_keeps_what_was_saved(tiny, demo, tmp_path):
    events = []

    def listen(e):
        events.append(e)
        if isinstance(e, trainer.EpochEnd) and e.metrics.epoch == 2:
            raise OSError(28, "No space left on device", str(tmp_path / "runs"))

    with pytest.raises(PhonetuiError, match="No space left on device"):
        trainer.train(tiny, demo, tmp_path / "runs", listen)
    assert isinstance(events[-1], trainer.Failed) and "No space left" in events[-1].message
    run = runs.open_run(events[-1].run.path)
    assert run.status.status == "failed" and run.state == "failed"
    assert (run.path / runs.CHECKPOINT).is_file() and run.status.best_epoch == 1


@pytest.mark.parametrize("error", [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), MemoryError()])
def test_out_of_memory_is_one_readable_line(tiny, demo, tmp_path, error):
    def listen(e):
        if isinstance(e, trainer.EpochEnd):
            raise error

    with pytest.raises(PhonetuiError, match="out of memory on the training device: lower batch_size"):
        trainer.train(tiny, demo, tmp_path / "runs", listen)
    (run,) = runs.list_runs(tmp_path / "runs")
    assert run.state == "failed" and "out of memory" in run.status.message


@pytest.mark.parametrize("amx", [True, False])
def test_precision_auto_on_a_cpu_means_bf16_where_it_has_amx(amx, monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    assert device.autocast("auto", cpu, 64).kind == ("bf16" if amx else "off")
    assert device.autocast("auto", cpu, 32).kind == "off"  # small batches: the per-step weight casts cost more
    assert device.autocast("bf16", cpu, 1).kind == "bf16" and device.autocast("fp32", cpu, 4096).kind == "off"
    assert device.autocast("fp16", cpu, 1).scaler and not device.autocast("bf16", cpu, 1).scaler
    assert device.autocast("auto", torch.device("mps"), 512).kind == "off"
    for p in ("bf16", "fp16"):
        with pytest.raises(PhonetuiError, match=f"training.precision = '{p}': {p} autocast runs on CUDA and CPU, not mps"):
            device.autocast(p, torch.device("mps"), 512)


@pytest.mark.parametrize("cc, kind", [
    ((9, 0), "bf16"), ((8, 9), "bf16"), ((8, 6), "bf16"), ((8, 0), "bf16"),  # H100, L4, RTX 30xx / A10, A100
    ((7, 5), "fp16"), ((7, 0), "fp16"), ((6, 0), "fp16"),  # T4, V100, P100: fp16 with a GradScaler
    ((6, 1), "off"), ((5, 2), "off"), ((3, 7), "off"),  # GTX 10xx (fp16 at 1/64 rate), Maxwell, K80
])
def test_precision_auto_on_cuda_follows_the_compute_capability_never_emulated_bf16(cc, kind, monkeypatch):
    """Faked device properties: torch 2.13's is_bf16_supported() says True on every one of these (it
    counts emulation), so it must not be what decides."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: cc)
    cast = device.autocast("auto", torch.device("cuda"), 512)
    assert (cast.kind, cast.scaler) == (kind, kind == "fp16")
    assert f"compute capability {cc[0]}.{cc[1]}" in cast.why and cast.why.startswith("precision: ")
    p = plan(TINY.with_training(capture="on"), torch.device("cuda"), cast, resident=True)
    assert p.capture == (kind != "fp16") and p.notes[0] == cast.why  # the reason goes into step_notes
    if kind == "fp16":
        assert "capture: off (fp16's GradScaler checks every step's gradients on the host" in p.notes[-1]
    asked = device.autocast("bf16", torch.device("cuda"), 512)
    assert asked.kind == "bf16" and ("emulated" in asked.why) == (cc < (8, 0))


def test_bf16_autocast_learns_like_fp32_and_is_recorded(tiny, demo, tmp_path):
    fp32, _ = run_collect(tiny, demo, tmp_path)
    bf16, events = run_collect(tiny.with_training(precision="bf16"), demo, tmp_path)
    assert events[0].device.startswith("cpu, bf16 autocast, ") and bf16.record["autocast"] == "bf16"
    assert fp32.record["autocast"] == "off" and fp32.record["grad_scaler"] is False
    assert [m.val_acc for m in bf16.metrics()] != [m.val_acc for m in fp32.metrics()]  # it did run in bf16
    assert bf16.status.best_val_acc == pytest.approx(fp32.status.best_val_acc, abs=0.03)
    state = torch.load(bf16.path / runs.CHECKPOINT, weights_only=True)["state_dict"]
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())


FP16_TOLERANCE = 0.01  # half of what the seed alone moves this run's best val acc (see the test)


def test_fp16_autocast_with_a_grad_scaler_learns_like_fp32_and_is_recorded(tiny, demo, tmp_path):
    """fp16 keeps 10 mantissa bits (bf16 7), and the GradScaler keeps small gradients from flushing to
    zero, so it should differ from fp32 by less than the seed does. Measured on this run (the
    fixture's 8,000 simulated rows, seeds 0-4): fp32's best val acc spans 0.020 over the seeds, and
    fp16 differs from fp32 of the same seed by 0.0019-0.0069. FP16_TOLERANCE (0.01) is half the seed's
    spread and above every paired gap measured."""
    fp32, _ = run_collect(tiny, demo, tmp_path)
    fp16, events = run_collect(tiny.with_training(precision="fp16"), demo, tmp_path)
    assert events[0].device.startswith("cpu, fp16 autocast + GradScaler, ")
    record = runs.open_run(fp16.path).record
    assert record["autocast"] == "fp16" and record["grad_scaler"] is True
    assert record["step_notes"][0] == "precision: fp16 (asked)"
    assert [m.train_loss for m in fp16.metrics()] != [m.train_loss for m in fp32.metrics()]  # it did run in fp16
    assert fp16.status.best_val_acc == pytest.approx(fp32.status.best_val_acc, abs=FP16_TOLERANCE)
    state = torch.load(fp16.path / runs.CHECKPOINT, weights_only=True)["state_dict"]
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())
    last = torch.load(fp16.path / runs.LAST, weights_only=True)
    assert last["scaler"]["scale"] > 1  # the loss was scaled (65536 at the start, lowered on overflow)
    opt = last["optimizer"]["state"][0]
    assert opt["exp_avg"].dtype == opt["exp_avg_sq"].dtype == torch.float32


def test_a_status_that_cannot_be_written_ends_as_interrupted_not_running(tiny, demo, tmp_path, monkeypatch):
    """A full disk for best.pt and status.json alike: one line, and the lock (not the stale status) decides."""
    def full(*args, **kwargs):
        raise PhonetuiError("status.json: cannot write (No space left on device)")

    monkeypatch.setattr(checkpoint, "_save", full)
    monkeypatch.setattr(runs.Run, "write_status", full)
    with pytest.raises(PhonetuiError, match="No space left on device"):
        trainer.train(tiny.with_training(epochs=1), demo, tmp_path)
    (run,) = runs.list_runs(tmp_path)
    assert run.status.status == "running" and run.state == "interrupted"


def test_epochs_for_reaches_min_steps_on_small_data() -> None:
    from phonetui.config import TrainConfig, epochs_for

    t = TrainConfig(batch_size=16, epochs=15, min_steps=900)
    assert epochs_for(t, 960) == 15  # 60 steps an epoch: 900 steps in the 15 epochs asked
    assert epochs_for(t, 240) == 60  # 15 steps an epoch
    assert epochs_for(t, 241) == 57  # 16 steps an epoch (the last one short): 912 steps
    assert epochs_for(TrainConfig(batch_size=16, epochs=15), 240) == 15  # min_steps 0: off


def test_min_steps_raises_the_epochs_and_the_run_records_both(tiny, demo, tmp_path, capsys) -> None:
    from phonetui import runs

    run = trainer.train(tiny.with_training(epochs=1, min_steps=120), demo, tmp_path / "runs")  # 50 steps an epoch
    assert run.config.training.epochs == 3 and run.record["epochs_asked"] == 1 and len(run.metrics()) == 3
    again = runs.open_run(run.path)
    assert again.config.training.epochs == 3 and again.epochs_note == "epochs 1 -> 3: min_steps 120"
    plain = trainer.train(tiny.with_training(epochs=1), demo, tmp_path / "runs")
    assert "epochs_asked" not in plain.record and plain.epochs_note == ""
