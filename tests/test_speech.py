"""The synthesized-speech demo set: the course's format, honest labels, unseen test voices and texts."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from phonetui import data
from phonetui.cli import main
from phonetui.data import speech

@pytest.fixture(scope="module")
def speech_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("speech") / "demo"
    data.make_speech_demo(out, utterances=8, test_utterances=4, seed=1)
    return out


def table(folder: Path) -> list[dict]:
    with open(folder / speech.UTTERANCES, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_files_shapes_and_labels(speech_set: Path) -> None:
    loaded = data.load(speech_set)
    assert loaded.demo == "synthesized speech" and "DEMO synthesized speech" in loaded.describe()
    for split in ("train", "test"):
        x = np.load(speech_set / f"{split}_11.npy")
        y = np.load(speech_set / f"{split}_label_11.npy")
        assert x.dtype == np.float32 and x.ndim == 2 and x.shape[1] == 429 and np.isfinite(x).all()
        assert y.dtype == np.dtype("<U2") and y.shape == (len(x),)
        assert set(np.unique(y.astype(int))) <= set(range(39))
    y = loaded.train_y
    assert len(np.unique(y)) > 20  # real sentences reach most phone classes
    assert np.bincount(y, minlength=39).argmax() == speech.SIL


def test_rows_chain_into_the_listed_utterances(speech_set: Path) -> None:
    rows = table(speech_set)
    for split in ("train", "test"):
        x = np.load(speech_set / f"{split}_11.npy")
        mine = [r for r in rows if r["split"] == split]
        assert data.utterances.scan(x).tolist() == [int(r["first_row"]) for r in mine]
        assert sum(int(r["frames"]) for r in mine) == len(x)
        frames = x.reshape(len(x), 11, 39)
        starts = np.array([int(r["first_row"]) for r in mine])
        ends = np.r_[starts[1:], len(x)] - 1
        assert (frames[starts, :6] == frames[starts, :1]).all()  # edge frame repeated at the start
        assert (frames[ends, 5:] == frames[ends, 5:6]).all()  # and at the end
        y = np.load(speech_set / f"{split}_label_11.npy").astype(int)
        assert (y[starts] == speech.SIL).all() and (y[ends] == speech.SIL).all()  # silence at both ends
        assert all(int(r["frames"]) > 100 for r in mine)  # whole sentences, at 10 ms a frame


def test_test_voices_and_sentences_are_unseen(speech_set: Path) -> None:
    rows = table(speech_set)
    train = [r for r in rows if r["split"] == "train"]
    test = [r for r in rows if r["split"] == "test"]
    assert {r["variant"] for r in train}.isdisjoint({r["variant"] for r in test})
    assert {r["text"] for r in train}.isdisjoint({r["text"] for r in test})
    train_texts, test_texts = speech.sentences()
    assert len(train_texts) > 1000 and len(test_texts) > 200 and not set(train_texts) & set(test_texts)
    train_voices, test_voices = speech.variants()
    assert len(train_voices) > 20 and len(test_voices) > 5 and not set(train_voices) & set(test_voices)


def test_same_seed_same_files(speech_set: Path, tmp_path: Path) -> None:
    again, told = tmp_path / "again", []
    data.make_speech_demo(again, utterances=8, test_utterances=4, seed=1, progress=lambda *a: told.append(a))
    assert told[0] == (0, 12) and told[-1] == (12, 12)  # the total from the start: a bar never shows 0/?
    for name in ("train_11.npy", "train_label_11.npy", "test_11.npy", "test_label_11.npy", speech.UTTERANCES):
        assert (again / name).read_bytes() == (speech_set / name).read_bytes(), name


def test_every_class_has_espeak_phonemes_and_labels_follow_events() -> None:
    assert set(speech.PHONE_CLASS.values()) == set(range(39))
    events = [(0, "_"), (100, "'eI"), (250, "t#"), (300, ",@"), (420, "_:")]
    y, unmapped = speech.labels(events, np.array([-30, 50, 100, 249, 260, 419, 500]))
    assert [speech.CLASSES[i] for i in y] == ["sil", "sil", "ey", "ey", "dx", "ah", "sil"] and not unmapped
    y, _ = speech.labels([(200, "s"), (300, "_")], np.array([-5, 150, 250]))  # before the first event
    assert [speech.CLASSES[i] for i in y] == ["sil", "sil", "s"]


def test_unmapped_phonemes_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    utterance = speech.plan("train", 1, 0)[0]
    assert not speech.render(utterance, speech.Espeak())[2]
    monkeypatch.delitem(speech.PHONE_CLASS, "n")
    x, y, unmapped = speech.render(utterance, speech.Espeak())
    assert unmapped["n"] > 0 and len(x) == len(y)
    summary = {"utterances": {"train": 0, "test": 1}, "rows": {"train": 0, "test": 9}, "skipped": 1,
               "unmapped": dict(unmapped), "voices": {"train": [], "test": ["en-us+m1"]}}
    assert "skipped 1 utterances with eSpeak phonemes that have no class: n (" in speech.describe(summary)


def test_frames_every_10_ms_of_25_ms() -> None:
    rate = 22050
    assert len(speech.frame_starts(int(0.025 * rate), rate)) == 1
    assert len(speech.frame_starts(rate, rate)) == 98  # one second: (1000 - 25) / 10 + 1
    tone = np.sin(2 * np.pi * 440 * np.arange(rate) / rate)
    assert speech.mfcc(tone, rate).shape == (98, 13)


def test_cli_writes_speech_and_refuses_bad_sizes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["demo-data", "--out", str(tmp_path / "s"), "--utterances", "3", "--test-utterances", "1"]) == 0
    out = capsys.readouterr().out
    assert "wrote speech demo data" in out and "3 train utterances" in out and "1 test utterances" in out
    assert main(["demo-data", "--speech", "--out", str(tmp_path / "t"), "--utterances", "1"]) == 2
    assert "at least 2 train utterances" in capsys.readouterr().err


def test_made_where_stderr_has_no_file_descriptor(tmp_path: Path) -> None:
    """Inside the Textual app sys.stderr is a capture whose fileno() is -1; the pool's spawn failed
    there ('bad value(s) in fds_to_keep'), so the app could not make its demo set."""
    import subprocess
    import sys

    script = ("import sys\n"
              "class Capture:\n"
              "    def write(self, s): return len(s)\n"
              "    def flush(self): pass\n"
              "    def fileno(self): return -1\n"
              "sys.stderr = Capture()\n"
              "import traceback\n"
              "from pathlib import Path\nfrom phonetui import data\n"
              "try:\n"
              f"    data.make_speech_demo(Path({str(tmp_path / 'demo')!r}), utterances=2, test_utterances=1, seed=1)\n"
              "except BaseException:\n"
              "    traceback.print_exc(file=sys.stdout)\n"
              "    raise SystemExit(1)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "demo" / "train_11.npy").exists()
