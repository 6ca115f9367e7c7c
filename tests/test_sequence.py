"""Whole-utterance models: boundaries from rows, the utterance split, taggers, smoothing, diagnostics."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest
import torch

from phonetui import batches, checkpoint, data, runs, trainer
from phonetui.augment import WARP_HZ, spec_augment, vtlp, warp_matrices
from phonetui.cli import main
from phonetui.config import PHONES, ModelConfig, RunConfig, TrainConfig, parse_model
from phonetui.data import frames, utterances
from phonetui.errors import PhonetuiError
from phonetui.evaluation import smooth
from phonetui.models import build, conv_frames
from phonetui.predict import predict
from tests.conftest import write_set


def rows_of(lengths: list[int], seed: int = 0) -> np.ndarray:
    """Course rows of utterances with these frame counts (edge frames repeated, like the real files)."""
    rng = np.random.default_rng(seed)
    return np.concatenate([frames.windows(rng.standard_normal((n, 39)).astype(np.float32)) for n in lengths])


@pytest.fixture
def tagger() -> RunConfig:
    return RunConfig("tag", "test", ModelConfig(kind="tagger", cell="lstm", layers=1, size=32, conv=16),
                     TrainConfig(lr=1e-2, batch_size=4, epochs=3, val_ratio=0.2, device="cpu", precision="fp32"))


CONV = ModelConfig(kind="tagger", cell="conv", layers=3, size=32, normalize=True, dropout=0.1)


def test_boundaries_with_edge_frames_and_one_frame_utterances() -> None:
    lengths = [1, 7, 1, 1, 30, 2, 12, 1]
    x = rows_of(lengths)
    assert utterances.scan(x).tolist() == np.cumsum([0, *lengths[:-1]]).tolist()
    assert utterances.scan(rows_of([5])).tolist() == [0]


def test_boundaries_are_cached_by_file_identity(tmp_path, monkeypatch) -> None:
    x = rows_of([4, 9, 3])
    path, cache = tmp_path / "train_11.npy", tmp_path / "cache"
    np.save(path, x)
    first = utterances.starts(np.load(path, mmap_mode="r"), path, cache)
    assert first.tolist() == [0, 4, 13] and len(list(cache.iterdir())) == 1
    monkeypatch.setattr(utterances, "scan", lambda x: pytest.fail("scanned again"))
    assert utterances.starts(np.load(path, mmap_mode="r"), path, cache).tolist() == [0, 4, 13]
    monkeypatch.undo()
    np.save(path, rows_of([2, 2]))  # a new file at the same path is scanned anew
    assert utterances.starts(np.load(path, mmap_mode="r"), path, cache).tolist() == [0, 2]


def test_shuffled_rows_refuse_a_tagger_before_any_run_folder(tagger, tmp_path) -> None:
    shuffled = data.load(write_set(tmp_path / "d", rows=300))  # random rows: every row its own "utterance"
    with pytest.raises(PhonetuiError, match="rows are not in utterance order"):
        trainer.train(tagger, shuffled, tmp_path / "runs")
    assert not (tmp_path / "runs").exists()
    frame = RunConfig("f", "", ModelConfig(hidden=(16,)), TrainConfig(epochs=1, batch_size=32, device="cpu"))
    assert trainer.train(frame, shuffled, tmp_path / "runs").status.status == "finished"


def test_test_rows_that_do_not_chain_refuse_a_tagger(tagger, demo, tmp_path) -> None:
    rng = np.random.default_rng(0)
    broken = dataclasses.replace(demo, test_x=rng.standard_normal((50, 429), dtype=np.float32),
                                 test_starts=np.arange(50))
    with pytest.raises(PhonetuiError, match="test_11.npy: rows are not in utterance order"):
        trainer.train(tagger, broken, tmp_path / "runs")


def test_utterance_split_takes_whole_utterances_from_the_tail(demo) -> None:
    n = demo.n_train(0.2, by_utterance=True)
    assert n in set(demo.utterance_starts.tolist()) and n >= demo.n_train(0.2)
    assert demo.train_units(0.2, by_utterance=True) == int(np.searchsorted(demo.utterance_starts, n))
    assert demo.n_train(0.0, by_utterance=True) == len(demo.train_x)
    assert utterances.within(demo.utterance_starts, n, len(demo.train_x))[0] == 0


def test_utterance_batches_cover_every_row_once_with_zero_padding(demo) -> None:
    starts = demo.utterance_starts
    src = batches.source(ModelConfig(kind="tagger"), demo.train_x, demo.train_y, starts, torch.device("cpu"))
    for make in (lambda: map(src.take, src.epoch(3, torch.Generator().manual_seed(0))), lambda: src.ordered(2000)):
        seen = []
        for b in make():
            xb, lengths, where = b.inputs
            assert torch.equal(where, torch.nonzero((torch.arange(xb.shape[1])[None, :] < lengths[:, None]).flatten())[:, 0])
            assert xb.shape[:2] == (len(lengths), int(lengths.max()))
            pad = torch.arange(xb.shape[1])[None, :] >= lengths[:, None]
            assert (xb[pad] == 0).all()
            assert torch.equal(b.y, torch.from_numpy(demo.train_y)[b.rows])
            seen.append(b.rows)
        assert torch.sort(torch.cat(seen)).values.tolist() == list(range(len(demo.train_x)))


@pytest.mark.parametrize("cell", ["lstm", "conv"])
def test_tagger_learns_records_its_split_and_predicts_in_row_order(cell, tagger, demo, tmp_path) -> None:
    if cell == "conv":
        tagger = dataclasses.replace(tagger, model=CONV)
    events = []
    run = trainer.train(tagger, demo, tmp_path / "runs", events.append)
    started = next(e for e in events if isinstance(e, trainer.RunStarted))
    assert started.n_train == demo.n_train(0.2, by_utterance=True)
    assert run.record["val_rows"] == len(demo.train_x) - started.n_train
    majority = np.bincount(demo.train_y).max() / len(demo.train_y)
    assert run.status.best_val_acc > majority + 0.2
    p = predict(run, demo)
    table = np.loadtxt(p.path, delimiter=",", skiprows=1, dtype=np.int64)
    assert (table[:, 0] == np.arange(len(demo.test_x))).all()
    model, cfg, _ = checkpoint.load(run, torch.device("cpu"))
    model.eval()
    ends = np.append(demo.test_starts[1:], len(demo.test_x))
    with torch.no_grad():  # one utterance at a time, no batching at all
        expected = np.concatenate([
            model(torch.from_numpy(np.ascontiguousarray(demo.test_x[s:e, batches.CENTRE]))[None],
                  torch.tensor([e - s])).argmax(1).numpy()
            for s, e in zip(demo.test_starts, ends)])
    assert (table[:, 1] == expected).all()
    assert p.test_acc == pytest.approx((expected == demo.test_y).mean())


def test_smoothing_averages_inside_utterances_only() -> None:
    probs = torch.tensor([[1.0, 0], [0, 1], [1, 0], [0, 1], [0, 1]])
    assert torch.equal(smooth(probs, np.array([0]), 1), probs)
    out = smooth(probs, np.array([0, 3]), 3)
    expected = torch.tensor([[0.5, 0.5], [2 / 3, 1 / 3], [0.5, 0.5], [0, 1], [0, 1]])
    assert torch.allclose(out, expected)


def test_smoothing_is_scored_beside_the_raw_accuracy(tiny, demo, tmp_path) -> None:
    run = trainer.train(tiny.with_training(epochs=1, smooth=5), demo, tmp_path / "runs")
    (m,) = run.metrics()
    assert m.val_acc_raw is not None and m.val_acc != m.val_acc_raw
    assert runs.open_run(run.path).config.training.smooth == 5
    with pytest.raises(PhonetuiError, match="--smooth 4: must be an odd integer"):
        from phonetui.cli import resolve_config, parser

        resolve_config(parser().parse_args(["--smooth", "4"]))


def test_per_phone_diagnostics_of_the_best_model(tiny, demo, tmp_path, capsys) -> None:
    run = trainer.train(tiny.with_training(epochs=2), demo, tmp_path / "runs")
    with open(run.path / "per_phone.csv", newline="") as f:
        phones = list(csv.DictReader(f))
    assert [r["phone"] for r in phones] == list(PHONES)
    assert sum(int(r["frames"]) for r in phones) == run.record["val_rows"]
    correct = sum(int(r["correct"]) for r in phones)
    assert correct / run.record["val_rows"] == pytest.approx(run.status.best_val_acc)
    with open(run.path / "confusions.csv", newline="") as f:
        pairs = list(csv.DictReader(f))
    counts = [int(r["frames"]) for r in pairs]
    assert pairs and counts == sorted(counts, reverse=True) and all(r["true"] != r["predicted"] for r in pairs)
    assert main(["runs", "--show", str(run.path)]) == 0
    out = capsys.readouterr().out
    assert "predicted as" in out and f"{pairs[0]['true']}" in out


def test_tagger_settings_are_checked_by_kind() -> None:
    with pytest.raises(PhonetuiError, match="model.hidden: not a setting of kind = 'tagger'"):
        parse_model({"kind": "tagger", "hidden": [10]})
    with pytest.raises(PhonetuiError, match="model.cell = 'rnn': must be one of lstm, gru, conv"):
        parse_model({"kind": "tagger", "cell": "rnn"})
    for cfg in (ModelConfig(kind="tagger", cell="gru", layers=2, size=24, conv=8, input="window"),
                ModelConfig(kind="tagger", bidirectional=False, layers=1, size=16),
                CONV, dataclasses.replace(CONV, conv=8, input="window", layers=6)):
        assert cfg.param_count() == sum(p.numel() for p in build(cfg, 429).parameters())


def test_a_conv_tagger_never_reads_the_padding_or_another_utterance() -> None:
    """Its output for each utterance is the same alone or padded in a batch, whatever the padding holds."""
    model = build(dataclasses.replace(CONV, layers=6), 39).eval()
    lengths = [50, 31, 7, 1]
    x = torch.randn(len(lengths), 50, 39, generator=torch.Generator().manual_seed(0))
    for i, n in enumerate(lengths):
        x[i, n:] = 1e3 * (i + 1)  # anything but zeros
    with torch.no_grad():
        batched = model(x, torch.tensor(lengths))
        alone = torch.cat([model(x[i:i + 1, :n], torch.tensor([n])) for i, n in enumerate(lengths)])
    assert batched.shape == (sum(lengths), 39) and torch.allclose(batched, alone, atol=1e-5)


@pytest.mark.parametrize("dilation", [1, 2, 16])
def test_conv_frames_is_conv1d_on_the_transposed_frames(dilation) -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(12, 20, 3, padding=dilation, dilation=dilation).double()
    x = torch.randn(3, 40, 12, dtype=torch.double, requires_grad=True)
    ours, theirs = conv_frames(x, conv), conv(x.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(ours, theirs)
    grads = [torch.autograd.grad(y.square().sum(), (x, conv.weight, conv.bias)) for y in (ours, theirs)]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_masks_zero_spans_inside_each_utterance_and_bands_in_every_frame() -> None:
    torch.manual_seed(0)
    x, lengths = torch.ones(3, 200, 429), torch.tensor([200, 120, 9])
    y = spec_augment(x, lengths, time_mask=10, feature_mask=6)
    gaps = (y == 0).all(-1)  # whole frames zeroed: the time spans
    assert (gaps.sum(1) <= 4 * 10).all() and not gaps[1, 120:].any() and not gaps[2, 9:].any()
    bands = (y[:, ~gaps[0]][0] == 0).all(0).view(11, 39)  # values zeroed in every kept frame: the bands
    assert (bands == bands[0]).all() and 1 <= bands[0].sum() <= 12
    model = build(ModelConfig(kind="tagger", layers=1, size=8, input="window", time_mask=10, feature_mask=6), 429).eval()
    assert torch.equal(model(x, lengths), model(x, lengths))  # evaluation never masks


def warp_matrix(low: float, high: float | None = None) -> np.ndarray:
    """The warp as first written, one utterance at a time in numpy: the reference for warp_matrices."""
    hz, dct = frames.mel_edges()[1:-1], frames.cepstra()
    mels, back = frames.mel(hz), np.linalg.pinv(dct)
    knots = frames.mel(np.array(WARP_HZ, dtype=float))
    factor = np.exp(np.interp(mels, knots, np.log([low, low if high is None else high])))
    source = np.maximum.accumulate(np.clip(hz / factor, hz[0], hz[-1]))
    pos = np.interp(frames.mel(source), mels, np.arange(frames.N_MELS))
    below = np.minimum(pos.astype(int), frames.N_MELS - 2)
    resample = np.zeros((frames.N_MELS, frames.N_MELS))
    rows = np.arange(frames.N_MELS)
    resample[rows, below], resample[rows, below + 1] = 1 - (pos - below), pos - below
    return dct @ resample @ back


def test_batched_warp_equals_the_one_utterance_numpy_warp() -> None:
    torch.manual_seed(0)
    factors = torch.cat([torch.tensor([[1.0, 1.0], [1.1, 1.1], [0.7, 1.4], [1.4, 0.5]]),
                         ((torch.rand(60, 2) * 2 - 1) * np.log1p(0.5)).exp()])
    maps = warp_matrices(factors[:, 0], factors[:, 1])
    assert maps.shape == (64, 13, 13) and maps.dtype == torch.float32
    expected = np.stack([warp_matrix(lo, hi) for lo, hi in factors.tolist()])
    assert np.allclose(maps.numpy(), expected, atol=1e-6)


def test_vtlp_moves_formants_and_keeps_padding_and_spread() -> None:
    dct = frames.cepstra()
    one = lambda lo, hi=None: warp_matrices(torch.tensor([lo]), torch.tensor([lo if hi is None else hi]))[0].numpy()  # noqa: E731
    assert np.allclose(one(1.0), np.eye(13), atol=1e-5)
    peak = 5 * np.exp(-0.5 * ((np.arange(frames.N_MELS) - 10) / 1.5) ** 2)  # a formant at mel band 10
    moved = {f: int((np.linalg.pinv(dct) @ one(f) @ dct @ peak).argmax()) for f in (0.9, 1.0, 1.1)}
    assert moved[0.9] < moved[1.0] == 10 < moved[1.1]
    assert not np.allclose(one(1.1), one(1.1, 0.9))
    torch.manual_seed(0)
    x, lengths = torch.randn(3, 40, 39).repeat(1, 1, 11), torch.tensor([40, 25, 1])
    x[1, 25:], x[2, 1:] = 0, 0
    y = vtlp(x, (torch.arange(40)[None, :] < lengths[:, None]).unsqueeze(-1), 0.1)
    assert not torch.equal(y, x) and (y[1, 25:] == 0).all() and (y[2, 1:] == 0).all()
    assert torch.allclose(y[0].std(0), x[0].std(0), atol=1e-4) and torch.allclose(y[1, :25].std(0), x[1, :25].std(0), atol=1e-4)
    assert torch.allclose(y[..., :39].repeat(1, 1, 11), y, atol=1e-6)  # every frame of a window is mapped alike
    model = build(ModelConfig(kind="tagger", layers=1, size=8, warp=0.1), 39).eval()
    assert torch.equal(model(x[..., :39], lengths), model(x[..., :39], lengths))  # evaluation never warps
    with pytest.raises(PhonetuiError, match=r"model.warp = 1.5: must be in \[0, 1\]"):
        parse_model({"kind": "tagger", "warp": 1.5})
