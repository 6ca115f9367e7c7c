"""The training step (phonetui.step): the same numbers as a plain PyTorch loop, fast paths decided
and recorded with their reasons, CUDA-graph capture checked on a GPU (pytest -m gpu)."""

from __future__ import annotations

import dataclasses
import math
import tomllib

import pytest
import torch
import torch.nn.functional as F

from phonetui import batches, models, runs, trainer
from phonetui.config import ModelConfig, RunConfig, TrainConfig
from phonetui.data import utterances
from phonetui.device import Autocast
from phonetui.step import plan

TAGGER = RunConfig("tag", "", ModelConfig(kind="tagger", layers=1, size=24, conv=8, normalize=True, dropout=0.2,
                                          time_mask=5, feature_mask=4, warp=0.3),
                   TrainConfig(lr=3e-3, batch_size=3, epochs=2, val_ratio=0.2, device="cpu", precision="fp32",
                               optimizer="adamw", weight_decay=0.01, schedule="cosine"))


def reference(cfg: RunConfig, demo) -> list[float]:
    """Train acc, train loss and lr (its first step's) of each epoch from the plainest loop: float
    lr, LambdaLR, .item() per batch."""
    t, seq = cfg.training, cfg.model.sequence
    torch.manual_seed(t.seed)
    gen = torch.Generator().manual_seed(t.seed)
    n = demo.n_train(t.val_ratio, seq)
    src = batches.source(cfg.model, demo.train_x[:n], demo.train_y[:n], utterances.within(demo.utterance_starts, 0, n),
                         torch.device("cpu"))
    model = models.build(cfg.model, demo.width)
    opt_cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    opt = opt_cls(model.parameters(), lr=t.lr, weight_decay=t.weight_decay, fused=True)
    total = math.ceil(src.units / t.batch_size) * t.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, (lambda s: 0.5 * (1 + math.cos(math.pi * s / total))) if t.schedule == "cosine" else (lambda s: 1.0))
    out = []
    for _ in range(t.epochs):
        model.train()
        correct = loss_sum = seen = 0
        lr = opt.param_groups[0]["lr"]  # the rate the epoch trained with (its first step's)
        for idx in src.epoch(t.batch_size, gen):
            if cfg.model.batchnorm and len(idx) < 2:
                continue
            b = src.take(idx)
            logits = model(*b.inputs)
            loss = F.cross_entropy(logits, b.y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            correct += (logits.argmax(1) == b.y).sum().item()
            loss_sum += loss.item() * len(b.y)
            seen += len(b.y)
        out += [correct / seen, loss_sum / seen, lr]
    return out


def numbers(run: runs.Run) -> list[float]:
    return [v for m in run.metrics() for v in (m.train_acc, m.train_loss, m.lr)]


@pytest.mark.parametrize("batch", [97, 2133])  # 6,400 rows: a short last batch of 95 rows; one of 1 (BatchNorm skips it)
def test_a_frame_model_trains_exactly_like_a_plain_loop(tiny, demo, tmp_path, batch):
    cfg = dataclasses.replace(tiny, model=dataclasses.replace(tiny.model, dropout=0.1)).with_training(
        batch_size=batch, epochs=2, schedule="cosine")
    run = trainer.train(cfg, demo, tmp_path)
    assert numbers(run) == pytest.approx(reference(cfg, demo), rel=2e-5, abs=1e-7)


def test_a_tagger_trains_exactly_like_a_plain_loop(demo, tmp_path):
    run = trainer.train(TAGGER, demo, tmp_path)
    assert numbers(run) == pytest.approx(reference(TAGGER, demo), rel=2e-5, abs=1e-7)


def test_what_the_step_runs_is_recorded_with_each_reason(tiny, demo, tmp_path):
    run = trainer.train(tiny.with_training(epochs=1, capture="on"), demo, tmp_path)
    record = tomllib.loads((run.path / runs.CONFIG).read_text())["run"]
    assert record["capture"] is False and record["compile"] is False and record["tf32"] is False
    assert record["fused_adam"] is True and record["autocast"] == "off" and record["grad_scaler"] is False
    assert "capture: off (CUDA graphs need a CUDA device; this run is on cpu)" in record["step_notes"]
    assert "compile: off (auto: it has not paid off yet where measured)" in record["step_notes"]


def test_a_compile_failure_falls_back_to_eager_with_the_same_result(tiny, demo, tmp_path, monkeypatch):
    tiny = tiny.with_training(threads="2")  # bit for bit needs the same thread count (auto's follows the load)
    plain = trainer.train(tiny.with_training(epochs=1), demo, tmp_path / "a")

    def broken(model):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    fallback = trainer.train(tiny.with_training(epochs=1, compile="on"), demo, tmp_path / "b")
    strip = lambda r: [dataclasses.replace(m, seconds=0) for m in r.metrics()]  # noqa: E731
    assert strip(fallback) == strip(plain)
    record = runs.open_run(fallback.path).record
    assert record["compile"] is False and "compile: off (torch.compile failed: no compiler here)" in record["step_notes"]


def test_the_plan_on_cuda_tf32_and_capture_rules(tiny):
    cuda = torch.device("cuda")
    p = plan(tiny.with_training(precision="auto"), cuda, Autocast("bf16"), resident=True)
    assert p.tf32 and not p.capture and any("capture: off (auto:" in n for n in p.notes)
    assert not plan(tiny.with_training(precision="fp32"), cuda, Autocast(), True).tf32  # strict fp32 when asked
    assert plan(tiny.with_training(capture="on"), cuda, Autocast(), True).capture
    assert plan(tiny.with_training(capture="on"), cuda, Autocast(), False).notes[-1] == \
        "capture: off (the training rows do not fit on the device)"
    tagger = TAGGER.with_training(capture="on")
    assert plan(tagger, cuda, Autocast(), True).notes[-1] == "capture: off (a tagger's batches change shape with their utterances)"
    off = plan(tiny.with_training(capture="off", compile="off"), cuda, Autocast(), True)
    assert not off.capture and not off.compile and off.notes == ()


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_gpu_captured_step_equals_the_eager_step(tiny, demo, tmp_path, precision):
    cfg = dataclasses.replace(tiny, model=dataclasses.replace(tiny.model, dropout=0.0)).with_training(
        device="cuda", precision=precision, batch_size=97, epochs=3, schedule="cosine")
    eager = trainer.train(cfg.with_training(capture="off"), demo, tmp_path / "eager")
    graph = trainer.train(cfg.with_training(capture="on"), demo, tmp_path / "graph")
    assert runs.open_run(graph.path).record["capture"] is True, runs.open_run(graph.path).record["step_notes"]
    tol = 2e-3 if precision == "bf16" else 2e-4
    for a, b in zip(eager.metrics(), graph.metrics(), strict=True):
        assert (b.train_acc, b.train_loss, b.val_acc, b.lr) == pytest.approx((a.train_acc, a.train_loss, a.val_acc, a.lr),
                                                                             abs=tol)


@pytest.mark.gpu
@needs_cuda
def test_gpu_fp16_with_a_grad_scaler_learns_like_fp32_and_capture_falls_back(tiny, demo, tmp_path):
    fp32 = trainer.train(tiny.with_training(device="cuda", precision="fp32"), demo, tmp_path / "fp32")
    fp16 = trainer.train(tiny.with_training(device="cuda", precision="fp16", capture="on"), demo, tmp_path / "fp16")
    record = runs.open_run(fp16.path).record
    assert record["autocast"] == "fp16" and record["grad_scaler"] is True and record["capture"] is False
    assert any(n.startswith("capture: off (fp16's GradScaler") for n in record["step_notes"]), record["step_notes"]
    assert fp16.status.best_val_acc == pytest.approx(fp32.status.best_val_acc, abs=0.01)
    auto = runs.open_run(trainer.train(tiny.with_training(device="cuda", epochs=1), demo, tmp_path / "auto").path)
    native = torch.cuda.get_device_capability() >= (8, 0)
    assert auto.record["autocast"] == ("bf16" if native else "fp16"), auto.record["step_notes"]


@pytest.mark.gpu
@needs_cuda
def test_gpu_tagger_trains_on_the_device_and_records_why_it_is_not_captured(demo, tmp_path):
    run = trainer.train(TAGGER.with_training(device="cuda", capture="on"), demo, tmp_path)
    record = runs.open_run(run.path).record
    assert run.state == "finished" and record["capture"] is False and record["tf32"] is False
    assert "capture: off (a tagger's batches change shape with their utterances)" in record["step_notes"]
    cpu = trainer.train(TAGGER, demo, tmp_path)
    assert run.status.best_val_acc == pytest.approx(cpu.status.best_val_acc, abs=0.05)


def test_the_device_line_of_progress_is_a_gpu_s_memory_and_use_and_nothing_on_a_cpu():
    from phonetui.device import gpu_line, gpu_text

    assert gpu_line(torch.device("cpu")) is None
    assert gpu_text(3 * 2**30 + 2**29, 80 * 2**30, ", 87%") == "GPU 3.5/80 GiB, 87%"


@pytest.mark.gpu
@needs_cuda
def test_gpu_progress_events_carry_the_device_line(tiny, demo, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "PROGRESS_EVERY_S", 0.0)
    lines = []
    trainer.train(tiny.with_training(device="cuda", epochs=1, batch_size=64), demo, tmp_path,
                  lambda e: lines.append(e.device) if isinstance(e, trainer.Progress) else None)
    assert lines and all(line.startswith("GPU ") and " GiB" in line for line in lines)
