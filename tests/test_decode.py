"""Viterbi decoding along the utterance: argmax under uniform transitions and no duration term, the
textbook decode utterance by utterance, the duration term, transitions counted inside utterances only."""

from __future__ import annotations

import numpy as np
import torch

from phonetui.config import N_CLASSES
from phonetui.decode import transitions, tune, viterbi


def reference(logp: np.ndarray, log_trans: np.ndarray) -> np.ndarray:
    """The textbook Viterbi of one utterance, in numpy."""
    score, back = logp[0].copy(), []
    for e in logp[1:]:
        cand = score[:, None] + log_trans
        back.append(cand.argmax(0))
        score = cand.max(0) + e
    path = [int(score.argmax())]
    for b in reversed(back):
        path.append(int(b[path[-1]]))
    return np.array(path[::-1])


def random_posteriors(rows: int, seed: int = 0) -> torch.Tensor:
    return torch.softmax(torch.randn(rows, N_CLASSES, generator=torch.Generator().manual_seed(seed)) * 3, 1)


def test_uniform_transitions_decode_to_the_argmax() -> None:
    probs = random_posteriors(500)
    starts = np.array([0, 7, 8, 200, 499])
    uniform = torch.full((N_CLASSES, N_CLASSES), -np.log(N_CLASSES))
    assert torch.equal(viterbi(probs, starts, uniform), probs.argmax(1))


def test_the_batched_decode_equals_the_textbook_one_utterance_by_utterance() -> None:
    probs, starts = random_posteriors(900, 1), np.array([0, 1, 40, 41, 300, 650])
    log_trans = torch.log_softmax(torch.randn(N_CLASSES, N_CLASSES, generator=torch.Generator().manual_seed(2)) * 2, 1)
    got = viterbi(probs, starts, log_trans, scale=0.7).numpy()
    bounds = np.append(starts, len(probs))
    want = np.concatenate([reference(0.7 * probs[a:b].clamp_min(1e-8).log().numpy(), log_trans.numpy())
                           for a, b in zip(bounds[:-1], bounds[1:])])
    assert (got == want).all()


def test_sticky_transitions_mend_a_one_frame_flicker_and_tune_picks_a_scale() -> None:
    probs = torch.full((5, N_CLASSES), 1e-3)
    probs[:, 3] = 0.9
    probs[2, 3], probs[2, 7] = 0.4, 0.5  # one frame leans to phone 7
    labels = np.array([3] * 50 + [7] * 50)
    log_trans = transitions(labels, np.array([0, 50]))  # 3 -> 7 never seen inside an utterance
    assert viterbi(probs, np.array([0]), log_trans).tolist() == [3] * 5
    assert probs.argmax(1).tolist() == [3, 3, 7, 3, 3]
    scale, loop, acc = tune(probs, torch.full((5,), 3), np.array([0]), log_trans)
    assert acc == 1.0 and scale > 0 and loop == 0.0  # no duration term needed: none is chosen


def test_the_duration_term_is_a_bonus_on_staying_in_a_phone() -> None:
    probs = torch.full((5, N_CLASSES), 1e-3)
    probs[:, 3] = 0.9
    probs[2, 3], probs[2, 7] = 0.4, 0.5
    uniform = torch.full((N_CLASSES, N_CLASSES), -np.log(N_CLASSES))
    assert viterbi(probs, np.array([0]), uniform, loop=0.0).tolist() == [3, 3, 7, 3, 3]
    assert viterbi(probs, np.array([0]), uniform, loop=1.0).tolist() == [3] * 5  # log(0.5/0.4) < 2 x 1.0
    scale, loop, acc = tune(probs, torch.full((5,), 3), np.array([0]), uniform)
    assert acc == 1.0 and loop > 0  # only the duration term mends it under uniform transitions
    probs2, starts = random_posteriors(300, 3), np.array([0, 90, 91])
    log_trans = torch.log_softmax(torch.randn(N_CLASSES, N_CLASSES, generator=torch.Generator().manual_seed(4)), 1)
    bounds = np.append(starts, len(probs2))
    for loop in (-1.0, 2.0):
        want = np.concatenate([reference(probs2[a:b].clamp_min(1e-8).log().numpy(),
                                         log_trans.numpy() + loop * np.eye(N_CLASSES))
                               for a, b in zip(bounds[:-1], bounds[1:])])
        assert (viterbi(probs2, starts, log_trans, loop=loop).numpy() == want).all()


def test_transitions_never_cross_an_utterance_boundary() -> None:
    trans = transitions(np.array([1, 1, 2, 2]), np.array([0, 2])).exp()
    assert torch.allclose(trans.sum(1), torch.ones(N_CLASSES))
    assert trans[1, 2] == trans[1, 5]  # 1 -> 2 only happens across the boundary: unseen, add-one only
    assert trans[1, 1] > trans[1, 2]


def test_decode_viterbi_validates_keeps_the_raw_accuracy_and_predicts_decoded(tiny, demo, tmp_path):
    import json

    from phonetui import checkpoint, trainer
    from phonetui.predict import POSTERIORS_KEY, predict, test_posteriors

    run = trainer.train(tiny.with_training(epochs=2, decode="viterbi"), demo, tmp_path / "runs")
    metrics = run.metrics()
    assert all(m.val_acc_raw is not None and m.val_acc != m.val_acc_raw for m in metrics)
    decoder = checkpoint.decoder(run)
    assert decoder is not None
    p = predict(run, demo, tmp_path / "v.csv")
    table = np.loadtxt(p.path, delimiter=",", skiprows=1, dtype=np.int64)
    probs = torch.from_numpy(test_posteriors(run, demo).astype(np.float32))
    n = run.record["train_rows"]
    from phonetui.data import utterances

    trans = transitions(demo.train_y[:n], utterances.within(demo.utterance_starts, 0, n))
    assert (table[:, 1] == viterbi(probs, demo.test_starts, trans, *decoder).numpy()).all()
    assert (table[:, 1] != probs.argmax(1).numpy()).any()  # decoding changed something
    assert json.loads((run.path / POSTERIORS_KEY).read_text())["rows"] == len(demo.test_x)


def test_a_training_tunes_on_a_spread_sample_of_the_utterances() -> None:
    from phonetui.decode import sample

    probs, starts = random_posteriors(1000, 5), np.arange(0, 1000, 10)  # 100 utterances of 10 rows
    y = probs.argmax(1)
    p, yy, st = sample(probs, y, starts, 4)
    assert st.tolist() == [0, 10, 20, 30] and torch.equal(p[:10], probs[:10]) and torch.equal(p[-10:], probs[-10:])
    assert torch.equal(yy, torch.cat([y[a:a + 10] for a in (0, 330, 660, 990)]))
    assert sample(probs, y, starts, 500)[0] is probs  # fewer utterances than asked: all of them
    log_trans = torch.log_softmax(torch.randn(N_CLASSES, N_CLASSES, generator=torch.Generator().manual_seed(6)), 1)
    assert tune(probs, y, starts, log_trans, 4) == tune(p, yy, st, log_trans)
