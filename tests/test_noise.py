"""Signal or noise: intervals by bootstrap over utterances, paired comparisons on one split, the
best model's per-utterance counts kept in the run, each new best's gain with its interval."""

from __future__ import annotations

import numpy as np
import pytest

from phonetui import diagnostics, noise, runs, trainer
from phonetui.errors import PhonetuiError
from phonetui.events import BestSaved


def _utterances(acc_by_utt: np.ndarray, frames: int = 300) -> noise.Counts:
    f = np.full(len(acc_by_utt), frames, np.int64)
    return noise.Counts(f, np.round(acc_by_utt * frames).astype(np.int64))


def test_utterances_not_frames_set_the_width() -> None:
    """Frames of an utterance go together (easy speakers, hard ones): resampling utterances gives the
    honest, wider interval that resampling frames would hide."""
    rng = np.random.default_rng(1)
    c = _utterances(np.clip(rng.normal(0.7, 0.1, 400), 0, 1))
    by_utt = noise.interval(c)
    hits = np.concatenate([np.arange(f) < k for f, k in zip(c.frames, c.correct)])
    by_frame = noise.interval(noise.counts(hits, np.arange(len(hits))))  # every frame its own unit
    assert by_utt.lo < c.acc < by_utt.hi and by_utt.half > 3 * by_frame.half
    assert by_utt.half == pytest.approx(1.96 * 0.1 / np.sqrt(400), rel=0.2)  # the spread of utterance accuracies


def test_a_paired_difference_is_tighter_than_two_intervals() -> None:
    rng = np.random.default_rng(2)
    base = np.clip(rng.normal(0.7, 0.1, 400), 0, 1)
    a, b = _utterances(np.clip(base + 0.004 + rng.normal(0, 0.005, 400), 0, 1)), _utterances(base)
    d = noise.difference(a, b)
    assert d.beyond_noise and d.value == pytest.approx(a.acc - b.acc) and noise.verdict(d) == "beyond noise"
    assert noise.interval(a).lo < noise.interval(b).hi  # apart, the two intervals overlap: the pairing tells them apart
    other = _utterances(np.clip(rng.normal(0.7, 0.1, 300), 0, 1))  # another split: resampled each on its own
    assert not a.same_split(other) and noise.verdict(noise.difference(a, other)) == "within noise"
    assert noise.difference(b, b).value == 0 and not noise.difference(b, b).beyond_noise


def test_blocks_where_utterances_cannot_be_rebuilt() -> None:
    hits = np.ones(1000, bool)
    c = noise.counts(hits, np.array([0]))  # one "utterance" for every frame: blocks instead
    assert list(c.frames) == [noise.BLOCK] * 3 + [100] and c.acc == 1.0
    assert noise.interval(noise.Counts(np.array([5]), np.array([3]))) is None


def test_a_run_keeps_its_best_model_s_counts_and_each_gain_s_interval(tiny, demo, tmp_path) -> None:
    events = []
    run = trainer.train(tiny.with_training(epochs=4), demo, tmp_path, events.append)
    saved = [e for e in events if isinstance(e, BestSaved)]
    counts = diagnostics.val_counts(run)
    assert counts.frames.sum() == run.info.val_rows and counts.acc == pytest.approx(run.status.best_val_acc)
    assert diagnostics.matrix(run).sum() == run.info.val_rows
    assert saved[0].gain is None and all(e.gain is not None and e.over is not None for e in saved[1:])
    by_epoch = {m.epoch: m for m in run.metrics()}
    for e in saved[1:]:
        m = by_epoch[e.epoch]
        assert (m.gain_lo, m.gain_hi) == pytest.approx((e.gain.lo, e.gain.hi), abs=1e-6)
        assert m.gain_lo <= m.val_acc - by_epoch[e.over].val_acc <= m.gain_hi
        assert e.line().startswith(f"saving model with acc {e.val_acc:.3f}: ") and e.line().endswith(" noise")
    unsaved = [m for m in run.metrics() if m.epoch not in {e.epoch for e in saved}]
    assert all(m.gain_lo is None for m in unsaved)


def test_damaged_counts_are_named(tiny, demo, tmp_path) -> None:
    run = trainer.train(tiny.with_training(epochs=1), demo, tmp_path)
    path = run.path / diagnostics.VAL_COUNTS
    path.write_text("frames,correct\n10,11\n")
    with pytest.raises(PhonetuiError, match="val_utterances.csv: not rows of frames,correct"):
        diagnostics.val_counts(runs.open_run(run.path))
    path.write_text("frames,correct\n10,x\n")
    with pytest.raises(PhonetuiError, match="val_utterances.csv: malformed counts"):
        diagnostics.val_counts(run)
    (run.path / diagnostics.MATRIX).write_text("true,aa\naa,1\n")
    with pytest.raises(PhonetuiError, match="confusion.csv: not a 39x39 matrix"):
        diagnostics.matrix(run)


def test_runs_against_the_best_one_paired_on_their_shared_split(tiny, demo, tmp_path) -> None:
    a = trainer.train(tiny.with_training(epochs=1), demo, tmp_path)
    b = trainer.train(tiny.with_training(epochs=4), demo, tmp_path)
    vs = diagnostics.versus_best([a, b])
    assert vs[b.id] == "best" and vs[a.id].endswith(("beyond noise", "within noise"))
    d = noise.difference(diagnostics.val_counts(a), diagnostics.val_counts(b))
    assert vs[a.id] == f"{d.pts()}, {noise.verdict(d)}" and d.value == pytest.approx(a.status.best_val_acc
                                                                                    - b.status.best_val_acc)
    (a.path / diagnostics.VAL_COUNTS).unlink()  # a run from before the counts were kept
    assert diagnostics.versus_best([a, b]) == {a.id: "-", b.id: "best"}
