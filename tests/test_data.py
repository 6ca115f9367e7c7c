"""Data loading: every bad input is one PhonetuiError naming the file; good data stays memory-mapped."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest

from phonetui import data
from phonetui.data import files
from phonetui.data import speech
from phonetui.errors import PhonetuiError
from tests.conftest import write_set


def fails(folder: Path, *words: str) -> str:
    with pytest.raises(PhonetuiError) as e:
        data.load(folder)
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg
    return msg


@pytest.mark.parametrize("name", [data.TRAIN_X, data.TRAIN_Y, data.TEST_X])
def test_missing_file(tmp_path, name):
    (write_set(tmp_path) / name).unlink()
    fails(tmp_path, name, "missing file")


def test_missing_folder(tmp_path):
    fails(tmp_path / "nope", "nope", "not found")


@pytest.mark.parametrize("name", [data.TRAIN_X, data.TRAIN_Y])
def test_not_npy(tmp_path, name):
    write_set(tmp_path)
    (tmp_path / name).write_text("Id,Class\n0,1\n")
    fails(tmp_path, name, "not a .npy")


@pytest.mark.parametrize("label, words", [
    ("--1", ["'--1' at row 3", "not an integer"]), ("\u00b2", ["'\u00b2' at row 3", "not an integer"]),
    ("1_0", ["'1_0'", "not an integer"]),
    ("12345678901234567890123", ["12345678901234567890123 at row 3", "outside 0..38"]),
    ("+39", ["39 at row 3", "outside 0..38"]),
])
def test_label_strings_are_parsed_strictly(tmp_path, label, words):
    y = np.array(["5"] * 50, dtype="<U30")
    y[3] = label
    write_set(tmp_path, y=y)
    fails(tmp_path, data.TRAIN_Y, *words)


@pytest.mark.parametrize("y, shown", [(np.array([1.0] * 49 + [1e30]), "1e+30"),
                                      (np.array([1] * 49 + [2**64 - 1], np.uint64), "18446744073709551615")])
def test_huge_numeric_labels_are_shown_as_they_are(tmp_path, y, shown):
    write_set(tmp_path, y=y)
    fails(tmp_path, data.TRAIN_Y, f"label {shown} at row 49 is outside 0..38")


def test_npz_renamed_to_npy_is_named(tmp_path):
    write_set(tmp_path)
    np.savez(tmp_path / "x.npz", x=np.zeros((50, 429), np.float32))
    (tmp_path / "x.npz").rename(tmp_path / data.TRAIN_X)
    fails(tmp_path, data.TRAIN_X, "a .npz archive, not a .npy array")


@pytest.mark.parametrize("content, words", [(b"0,1\n", ["text", "not a .npy"]), (b"", ["an empty file"]),
                                            (b"\x80\x04K\x01.", ["pickled data"]),
                                            (b"\x93NUMPY\x01\x00", ["not a usable .npy array"])])
def test_files_that_are_not_npy_say_what_they_are(tmp_path, content, words):
    write_set(tmp_path)
    (tmp_path / data.TEST_X).write_bytes(content)
    fails(tmp_path, data.TEST_X, *words)


@pytest.mark.parametrize("make", [os.mkfifo, os.mkdir])
def test_a_fifo_or_folder_is_not_a_regular_file(tmp_path, make):
    write_set(tmp_path)
    (tmp_path / data.TEST_X).unlink()
    make(tmp_path / data.TEST_X)
    fails(tmp_path, data.TEST_X, "not a regular file")


def test_unreadable_folder_or_file_is_named(tmp_path, monkeypatch):
    write_set(tmp_path)

    def denied(path):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    with monkeypatch.context() as m:
        m.setattr(files.os, "listdir", denied)
        fails(tmp_path, f"{tmp_path}: cannot read the data folder (Permission denied)")
    real_open = open

    def no_read(path, *args, **kwargs):
        if str(path).endswith(data.TRAIN_Y):
            denied(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", no_read)
    fails(tmp_path, f"{tmp_path / data.TRAIN_Y}: cannot read (Permission denied)")


def test_pickled_objects_are_refused(tmp_path):
    write_set(tmp_path, y=np.array([object()] * 50))
    fails(tmp_path, data.TRAIN_Y, "Python objects")


def test_wrong_ndim(tmp_path):
    write_set(tmp_path, x=np.zeros(429, np.float32))
    fails(tmp_path, data.TRAIN_X, "2-D")


def test_width_not_multiple_of_39(tmp_path):
    write_set(tmp_path, x=np.zeros((50, 430), np.float32))
    fails(tmp_path, data.TRAIN_X, "430", "multiple of 39")


def test_test_width_differs(tmp_path):
    write_set(tmp_path, test=np.zeros((10, 390), np.float32))
    fails(tmp_path, data.TEST_X, "390", "429")


def test_float64_refused(tmp_path):
    write_set(tmp_path, x=np.zeros((50, 429)))
    fails(tmp_path, data.TRAIN_X, "float32", "float64")


def test_row_counts_differ(tmp_path):
    write_set(tmp_path, y=np.zeros(49, np.int64).astype(str))
    fails(tmp_path, data.TRAIN_Y, "49", "50")


@pytest.mark.parametrize("bad, shown", [(39, "39"), (-1, "-1")])
def test_labels_out_of_range(tmp_path, bad, shown):
    y = np.zeros(50, np.int64)
    y[7] = bad
    write_set(tmp_path, y=y)
    fails(tmp_path, data.TRAIN_Y, shown, "row 7", "outside 0..38")
    write_set(tmp_path, y=y.astype(str))
    fails(tmp_path, data.TRAIN_Y, shown, "row 7", "outside 0..38")


@pytest.mark.parametrize("y", [np.array(["3"] * 49 + ["sil"]), np.array([1.0] * 49 + [1.5]), np.ones(50, bool)])
def test_labels_not_integers(tmp_path, y):
    write_set(tmp_path, y=y)
    fails(tmp_path, data.TRAIN_Y, "integer")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf(tmp_path, bad):
    x = np.zeros((50, 429), np.float32)
    x[31, 200] = bad
    write_set(tmp_path, x=x)
    fails(tmp_path, data.TRAIN_X, "NaN or Inf", "row 31")


def test_labels_as_strings_or_ints_agree(tmp_path):
    y = np.arange(50) % 39
    write_set(tmp_path / "s", y=y.astype(str))
    write_set(tmp_path / "i", y=y.astype(np.int32))
    assert (data.load(tmp_path / "s").train_y == y).all()
    assert (data.load(tmp_path / "i").train_y == y).all()


def test_features_are_memory_mapped_float32(demo):
    for x in (demo.train_x, demo.test_x):
        assert isinstance(x, np.memmap) and x.dtype == np.float32
    assert demo.train_y.dtype == np.int64


def test_tail_split_like_the_course_code(demo):
    n = len(demo.train_x)
    assert demo.n_train(0.2) == int(n * 0.8)
    assert demo.n_train(0.0) == n
    assert "DEMO" in demo.describe(0.2) and f"{int(n * 0.8):,} train" in demo.describe(0.2)


def test_the_data_line_fits_the_app_at_120_columns(demo, monkeypatch):
    """The app's top line: the demo set in the cache at full size, with the devices after it."""
    import dataclasses

    monkeypatch.setenv("HOME", "/home/student")
    full = dataclasses.replace(demo, path=Path("/home/student/.cache/phonetui/demo-speech"), demo="synthesized speech",
                               train_x=np.empty((1_229_932, 1)), test_x=np.empty((451_552, 1)),
                               utterance_starts=np.arange(4620))
    line = full.describe(0.2) + "  · cpu, cuda"
    assert line.startswith("DEMO synthesized speech ~/.cache/phonetui/demo-speech · 983,945 train / 245,987 val / 451,552")
    assert len(line) <= 118, line  # 120 less the line's padding


def test_utterance_starts_find_every_break():
    frames = np.random.default_rng(0).standard_normal((30, 39)).astype(np.float32)
    rows = []
    for a, b in [(0, 12), (12, 30)]:  # two utterances of 12 and 18 frames
        idx = np.clip(np.arange(a, b)[:, None] + np.arange(-5, 6), a, b - 1)
        rows.append(frames[idx].reshape(b - a, 429))
    assert data.utterances.scan(np.concatenate(rows)).tolist() == [0, 12]


def test_default_dir_prefers_local_timit(tmp_path, monkeypatch):
    write_set(tmp_path / "timit_11")
    monkeypatch.chdir(tmp_path)
    assert data.default_dir() == Path("timit_11")


def test_default_dir_synthesizes_speech_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(files, "DEMO_UTTERANCES", 6)
    monkeypatch.setattr(files, "DEMO_TEST_UTTERANCES", 2)
    said, steps = [], []
    first = data.default_dir(say=said.append, progress=lambda done, total: steps.append((done, total)))
    assert first == tmp_path / "cache" / "phonetui" / "demo-speech" and len(said) == 1
    assert steps[-1] == (8, 8)
    assert data.default_dir(say=said.append) == first and len(said) == 1
    d = data.load(first)
    assert d.demo == "synthesized speech" and len(d.utterance_starts) == 6 and d.test_y is not None
    assert "DEMO synthesized speech" in d.describe()


def test_default_dir_falls_back_to_simulated_without_espeak(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(files, "DEMO_TRAIN_ROWS", 2000)
    monkeypatch.setattr(files, "DEMO_TEST_ROWS", 300)
    monkeypatch.setattr(speech, "available", lambda: "eSpeak NG is not installed (pip install 'phonetui[speech]')")
    said = []
    first = data.default_dir(say=said.append)
    assert first == tmp_path / "cache" / "phonetui" / "demo" and len(said) == 1
    assert "phonetui[speech]" in said[0] and "simulated" in said[0]
    d = data.load(first)
    assert d.demo == "simulated" and len(d.train_x) == 2000 and len(d.test_x) == 300
