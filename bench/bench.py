"""Training speed: the course sample code's loop against phonetui's trainer, same data, same run.

    python bench/bench.py                       # demo data, baseline + wide-deep, batch 64 and 512
    python bench/bench.py --data timit_11 --presets baseline --batches 64,256,512,2048
    python bench/bench.py --memory              # also: peak RSS of train + predict at full size

For each preset and batch size it times (a) the reference loop, written the way the course code
trains (per-sample Dataset, DataLoader(shuffle=True), .item() per batch, tail split), and (b)
phonetui.trainer, each for about --seconds of training after a warm-up, and reports frames/s,
(b)/(a), seconds per epoch extrapolated to 1,229,932 rows, the fraction of the device's measured
fp32 (and bf16) matmul rate that training reaches, and evaluation / prediction time for 451,552
test rows. On a CPU it times phonetui in fp32 and, where autocast runs, bf16; on a GPU it adds the
fast paths one by one. Prints a markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from phonetui import batches, checkpoint, data, models, presets, trainer
from phonetui.device import autocast, resolve_device
from phonetui.evaluation import posteriors
from phonetui.predict import predict

FULL_TRAIN, FULL_TEST = 1_229_932, 451_552


def matmul_rate(device: torch.device, dtype: torch.dtype) -> float:
    """Best FLOP/s over square matmuls of 1024..4096 (the machine's practical peak); stops growing
    where one matmul already takes a second (bf16 on a CPU without bf16 units)."""
    best = 0.0
    for n in (1024, 2048, 4096):
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        if time.perf_counter() - start > 1.0:
            return max(best, 2 * n**3 / (time.perf_counter() - start))
        a @ b
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < 1.0:
            a @ b
            reps += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - start))
    return best


class CourseDataset(Dataset):
    """The sample code's TIMITDataset: one torch tensor per row, built in __getitem__."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.data = torch.from_numpy(x).float()
        self.label = torch.LongTensor(y)

    def __getitem__(self, idx):
        return self.data[idx], self.label[idx]

    def __len__(self):
        return len(self.data)


def reference_fps(cfg, x: np.ndarray, y: np.ndarray, device: torch.device, seconds: float) -> float:
    """Frames/s of the course loop: DataLoader(shuffle=True), .item() per batch, accuracy on the CPU."""
    torch.manual_seed(0)
    layers = models.build(cfg.model, x.shape[1])  # the same architecture, with torch's own nn.Dropout
    model = torch.nn.Sequential(*[torch.nn.Dropout(m.p) if isinstance(m, models.Dropout) else m for m in layers]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.training.lr)
    loader = DataLoader(CourseDataset(x, y), batch_size=cfg.training.batch_size, shuffle=True)
    crit = torch.nn.CrossEntropyLoss()
    model.train()
    frames, start, warm = 0, None, 3
    train_acc = train_loss = 0.0
    for inputs, labels in loader:
        inputs, labels = inputs.to(device), labels.to(device)
        opt.zero_grad()
        outputs = model(inputs)
        batch_loss = crit(outputs, labels)
        _, train_pred = torch.max(outputs, 1)
        batch_loss.backward()
        opt.step()
        train_acc += (train_pred.cpu() == labels.cpu()).sum().item()
        train_loss += batch_loss.item()
        if warm:
            warm -= 1
            start = time.perf_counter()
            continue
        frames += len(labels)
        if time.perf_counter() - start >= seconds:
            break
    return frames / (time.perf_counter() - start)


def phonetui_fps(cfg, ds: data.TimitData, fused: bool) -> tuple[float, dict]:
    """Frames/s of phonetui.trainer over one epoch after a warm-up epoch (no validation), and what its
    step ran (the run record: capture, compile, TF32, notes)."""
    rows = ds.n_train(0.0)
    with tempfile.TemporaryDirectory() as runs_dir:
        run = trainer.train(cfg.with_training(epochs=2, val_ratio=0.0), ds, Path(runs_dir), fused=fused)
        ran = {k: run.record[k] for k in ("autocast", "grad_scaler", "tf32", "fused_adam", "compile", "capture", "step_notes")}
        return rows / run.metrics()[-1].seconds, ran


def concurrent_fps(cfg, ds: data.TimitData, n: int) -> float:
    """Frames/s of n runs of cfg training at once, each in its own thread (and CUDA stream), over
    their second epochs, which all overlap when the runs are alike."""
    import threading

    seconds: list[float] = []

    def one(d: str) -> None:
        with torch.cuda.stream(torch.cuda.Stream()) if torch.cuda.is_available() else contextlib.nullcontext():
            run = trainer.train(cfg.with_training(epochs=2, val_ratio=0.0), ds, Path(d))
        seconds.append(run.metrics()[-1].seconds)

    with tempfile.TemporaryDirectory() as d:
        threads = [threading.Thread(target=one, args=(f"{d}/{i}",)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return n * ds.n_train(0.0) / max(seconds) if len(seconds) == n else float("nan")


def sized(ds: data.TimitData, rows: int) -> data.TimitData:
    """The first `rows` training rows of a data set (views, no copies), cut at an utterance's start."""
    starts = ds.utterance_starts
    rows = int(starts[max(int(np.searchsorted(starts, rows, side="right")) - 1, 1)]) if len(starts) > 1 and rows < len(ds.train_x) else rows
    return dataclasses.replace(ds, train_x=ds.train_x[:rows], train_y=ds.train_y[:rows], utterance_starts=starts[starts < rows])


def rows_for(cfg, fps_guess: float, seconds: float, available: int) -> int:
    return int(min(available, max(cfg.training.batch_size * 20, fps_guess * seconds)))


def predict_seconds(cfg, ds: data.TimitData, device: str) -> tuple[float, float]:
    """(evaluation s, prediction s) for the data's test rows, scaled to 451,552 rows."""
    with tempfile.TemporaryDirectory() as d:
        small = sized(ds, cfg.training.batch_size * (1600 if cfg.model.sequence else 4))
        run = trainer.train(cfg.with_training(epochs=1, val_ratio=0.0, device=device), small, Path(d))
        scale = FULL_TEST / len(ds.test_x)
        dev = resolve_device(device)
        model, model_cfg, _ = checkpoint.load(run, dev)
        y = ds.test_y if ds.test_y is not None else np.zeros(len(ds.test_x), np.int64)  # timing only
        test_set = batches.source(model_cfg, ds.test_x, y, ds.test_starts, dev)
        start = time.perf_counter()
        posteriors(model, test_set, dev, autocast(cfg.training.precision, dev, cfg.training.batch_size).dtype)
        evaluation = (time.perf_counter() - start) * scale
        start = time.perf_counter()
        predict(run, ds, Path(d) / "p.csv", device)
        return evaluation, (time.perf_counter() - start) * scale


def peak_rss(args, ds_dir: Path) -> dict:
    """Peak RSS of `phonetui train --predict` (1 epoch) in a child process, against the .npy bytes."""
    npy = sum(f.stat().st_size for f in ds_dir.glob("*_11.npy") if "label" not in f.name)
    with tempfile.TemporaryDirectory() as runs_dir:
        cmd = [sys.executable, "-m", "phonetui", "train", "--data", str(ds_dir), "--preset", "baseline",
               "--epochs", "1", "--batch-size", "2048", "--runs", runs_dir, "--predict", "--device", args.device]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return {"feature_npy_bytes": npy, "peak_rss_bytes": peak, "ratio": peak / npy}


OFF = {"compile": "off", "capture": "off"}


def variants_for(device: torch.device, batch: int, sequence: bool) -> dict[str, tuple[dict, bool]]:
    """The phonetui variants to time at this batch size, by label: (training values, fused Adam)."""
    if device.type == "cuda":
        eager = {"phonetui fp32, unfused": ({"precision": "fp32"} | OFF, False),
                 "+fused Adam": ({"precision": "fp32"} | OFF, True),
                 "+TF32": ({"precision": "tf32"} | OFF, True),
                 "auto (bf16 from cc 8.0)": ({"precision": "auto"}, True),
                 "fp16 + GradScaler (auto on T4/V100)": ({"precision": "fp16"}, True)}
        if sequence:
            return eager
        return eager | {"captured, TF32": ({"precision": "tf32", "capture": "on", "compile": "off"}, True),
                        "captured, bf16": ({"precision": "bf16", "capture": "on", "compile": "off"}, True),
                        "compiled + captured, bf16": ({"precision": "bf16", "capture": "on", "compile": "on"}, True)}
    if device.type != "cpu" or sequence:  # (a CPU LSTM under bf16 autocast needs bf16 units)
        return {"phonetui (default)": ({"precision": "auto"}, True)}
    bf16_default = autocast("auto", device, batch).kind == "bf16"
    return {"phonetui fp32" + ("" if bf16_default else " (default)"): ({"precision": "fp32"}, True),
            "phonetui bf16 autocast" + (" (default)" if bf16_default else ""): ({"precision": "bf16"}, True)}


def cases(args) -> list[tuple[str, list[int]]]:
    """(preset, batch sizes) to time: --cases NAME:BATCH,... or every --presets at its kind's batches."""
    if not args.cases:
        return [(name, []) for name in args.presets.split(",")]
    out: dict[str, list[int]] = {}
    for case in args.cases.split(","):
        name, _, bs = case.partition(":")
        out.setdefault(name, []).append(int(bs))
    return list(out.items())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, help="TIMIT-format folder (default: a demo set made for the bench)")
    p.add_argument("--rows", type=int, default=200_000, help="demo train rows to generate (default 200,000)")
    p.add_argument("--test-rows", type=int, default=FULL_TEST, help="demo test rows (default 451,552)")
    p.add_argument("--presets", default="baseline,wide-deep")
    p.add_argument("--batches", default="64,512", help="batch sizes of frame models")
    p.add_argument("--cases", help="instead of --presets and batches: NAME:BATCH,... (e.g. baseline:64,wide-deep:4096)")
    p.add_argument("--tagger-batches", default="16", help="batch sizes (utterances) of taggers")
    p.add_argument("--seconds", type=float, default=8.0, help="training time per measurement")
    p.add_argument("--device", default="auto")
    p.add_argument("--concurrent", type=int, default=0,
                   help="also time this many runs of baseline at the largest --batches training at once")
    p.add_argument("--threads", help="phonetui's threads setting (auto, the default, follows the machine's load: "
                   "a fixed count compares two trees fairly on a busy machine)")
    p.add_argument("--variants", help="only the phonetui variants whose label holds this text (e.g. fp32: "
                   "a CPU without bf16 units takes minutes over the bf16 one)")
    p.add_argument("--memory", action="store_true", help="also measure peak RSS at full size (writes 2.9 GB of demo data)")
    p.add_argument("--json", type=Path, default=Path("bench/results.json"))
    args = p.parse_args()

    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        ds_dir = args.data or data.make_demo(Path(tmp) / "demo", args.rows, args.test_rows, seed=0)
        ds = data.load(ds_dir)
        rate = matmul_rate(device, torch.float32)
        rate16 = matmul_rate(device, torch.bfloat16) if device.type in ("cuda", "cpu") else None
        gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
        env = {"device": gpu or f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads",
               "torch": torch.__version__, "data": str(ds_dir), "train_rows": len(ds.train_x)}
        rows = []
        for name, sizes in cases(args):
            base = presets.get(presets.load_all(), name)
            flops = models.flops_per_frame(base.model, ds.width)
            seq = base.model.sequence
            for bs in sizes or map(int, (args.tagger_batches if seq else args.batches).split(",")):
                cfg = base.with_training(batch_size=bs, device=str(device))
                # the course loop reads rows: a tagger has no course counterpart, and its guess is a frame MLP's
                ref = None if seq else reference_fps(cfg, ds.train_x, ds.train_y, device, args.seconds)
                row = {"preset": name, "batch": bs, "reference_fps": ref}
                for label, (values, fused) in variants_for(device, bs, seq).items():
                    if args.variants and args.variants not in label:
                        continue
                    guess = (ref or 20_000) * (30 if values.get("capture") == "on" else 3)  # rows for ~--seconds
                    vcfg = cfg.with_training(**values, **({"threads": args.threads} if args.threads else {}))
                    units = bs * 30 * 400 if seq else rows_for(vcfg, guess, args.seconds, len(ds.train_x))
                    sub = sized(ds, units)
                    fps, ran = phonetui_fps(vcfg, sub, fused)
                    row[label] = {"fps": fps, "ratio": fps / ref if ref else None, "epoch_s_full": FULL_TRAIN / fps,
                                  "flop_s": fps * flops, "autocast": ran["autocast"], "ran": ran}
                    print(f"  {name} batch {bs} {label}: {fps:,.0f} frames/s, ran {ran}", file=sys.stderr, flush=True)
                row["ref_epoch_s_full"] = FULL_TRAIN / ref if ref else None
                row["eval_s"], row["predict_s"] = predict_seconds(cfg, ds, str(device))
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
        # the practical peak is the best rate seen before or after the runs (a shared host varies)
        rate = max(rate, matmul_rate(device, torch.float32))
        rate16 = rate16 and max(rate16, matmul_rate(device, torch.bfloat16))
        env |= {"fp32_matmul_tflops": rate / 1e12, "bf16_matmul_tflops": rate16 and rate16 / 1e12}
        for v in (v for row in rows for v in row.values() if isinstance(v, dict) and "fps" in v):
            v["matmul_fraction"] = v["flop_s"] / rate
            v["bf16_matmul_fraction"] = v["flop_s"] / rate16 if rate16 and v["autocast"] in ("bf16", "fp16") else None
        if args.concurrent:
            cfg = presets.get(presets.load_all(), "baseline").with_training(
                batch_size=max(map(int, args.batches.split(","))), device=str(device))
            one_fps = phonetui_fps(cfg, sized(ds, rows_for(cfg, 200_000, args.seconds, len(ds.train_x))), True)[0]
            sub = sized(ds, rows_for(cfg, 200_000, args.seconds, len(ds.train_x)))
            env["concurrent"] = {"runs": args.concurrent, "one_fps": one_fps,
                                 "all_fps": concurrent_fps(cfg, sub, args.concurrent)}
            print(json.dumps(env["concurrent"]), file=sys.stderr, flush=True)
        result = {"env": env, "rows": rows, "peak_rss_bench_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
        if args.memory:
            with tempfile.TemporaryDirectory() as big:
                result["memory"] = peak_rss(args, data.make_demo(Path(big) / "full", FULL_TRAIN, FULL_TEST, seed=0))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))


def table(result: dict) -> str:
    env = result["env"]
    lines = [f"Device: {env['device']}, torch {env['torch']}; fp32 matmul {env['fp32_matmul_tflops']:.3f} TFLOP/s"
             + (f", bf16 {env['bf16_matmul_tflops']:.1f} TFLOP/s" if env["bf16_matmul_tflops"] else "")
             + f"; data {env['train_rows']:,} train rows", "",
             "| preset | batch | variant | frames/s | vs reference | s/epoch @1.23M rows | of fp32 matmul peak "
             "| of bf16 peak | eval 451k s | predict 451k s |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        if r["reference_fps"]:
            lines.append(f"| {r['preset']} | {r['batch']} | reference (course loop) | {r['reference_fps']:,.0f} | 1.00x | "
                         f"{r['ref_epoch_s_full']:,.1f} | | | | |")
        for label, v in r.items():
            if isinstance(v, dict) and "fps" in v:
                ratio = f"{v['ratio']:.2f}x" if v["ratio"] else ""
                lines.append(f"| {r['preset']} | {r['batch']} | {label} | {v['fps']:,.0f} | {ratio} | "
                             f"{v['epoch_s_full']:,.1f} | {v['matmul_fraction']:.0%} | "
                             + (f"{v['bf16_matmul_fraction']:.0%}" if v["bf16_matmul_fraction"] else "")
                             + f" | {r['eval_s']:.2f} | {r['predict_s']:.2f} |")
    lines.append("")
    if c := env.get("concurrent"):
        lines.append(f"{c['runs']} runs at once: {c['all_fps']:,.0f} frames/s in all, {c['all_fps'] / c['one_fps']:.2f}x "
                     f"one run's {c['one_fps']:,.0f}")
    lines.append(f"Peak RSS of the bench process: {result['peak_rss_bench_bytes'] / 2**30:.2f} GiB")
    if "memory" in result:
        m = result["memory"]
        lines.append(f"Full size (1,229,932 + 451,552 rows): `phonetui train --epochs 1 --predict` peak RSS "
                     f"{m['peak_rss_bytes'] / 2**30:.2f} GiB = {m['ratio']:.2f}x the {m['feature_npy_bytes'] / 2**30:.2f} GiB of .npy features")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
