"""Presets: the built-ins match their architectures; bad files name the file and key."""

from __future__ import annotations

import os

import pytest
import torch

from phonetui import models, presets
from phonetui.config import TRAIN_RULES, check_value
from phonetui.errors import PhonetuiError


def test_builtins_are_there_with_the_course_values():
    p = presets.load_all()
    assert {"baseline", "relu", "wide-deep", "strong"} <= set(p)
    b = p["baseline"]
    assert b.model.hidden == (1024, 512, 128) and b.model.activation == "sigmoid"
    assert (b.training.lr, b.training.batch_size, b.training.epochs, b.training.val_ratio) == (1e-4, 64, 20, 0.2)
    assert p["relu"].model.activation == "relu" and p["relu"].model.hidden == b.model.hidden
    wd = p["wide-deep"].model
    assert wd.hidden == (2048, 2048, 2048, 1024, 512, 256) and wd.batchnorm and wd.dropout == 0.5
    assert wd.activation == "leaky_relu"
    assert all(preset.description for preset in p.values())
    assert p["tiny"].model.hidden == (128, 64) and p["tiny"].model.batchnorm  # the README's quick examples use it


@pytest.mark.parametrize("name", ["baseline", "relu", "wide-deep", "strong", "tiny"])
def test_each_builtin_builds_with_its_parameter_count(name):
    cfg = presets.load_all()[name].model
    model = models.build(cfg, 429)
    assert sum(t.numel() for t in model.parameters()) == cfg.param_count()
    assert model(torch.zeros(2, 429)).shape == (2, 39)


def test_baseline_parameter_count_by_hand():
    # 429*1024+1024 + 1024*512+512 + 512*128+128 + 128*39+39
    assert presets.load_all()["baseline"].model.param_count() == 1_035_815


def test_user_folder_adds_and_overrides(tmp_path):
    (tmp_path / "mine.toml").write_text('name = "baseline"\ndescription = "mine"\n[training]\nlr = 0.5\n')
    p = presets.load_all([tmp_path])
    assert p["baseline"].description == "mine" and p["baseline"].training.lr == 0.5
    assert "wide-deep" in p


@pytest.mark.parametrize("text, words", [
    ('name = "x"\ncolour = 1\n', ["colour", "unknown key"]),
    ('name = "x"\n[model]\nwidth = 3\n', ["model", "width", "unknown key"]),
    ('name = "x"\n[training]\nlr = -1.0\n', ["training.lr", "must be > 0"]),
    ('name = "x"\n[training]\nbatch_size = 0\n', ["training.batch_size"]),
    ('name = "x"\n[training]\nepochs = 2.5\n', ["training.epochs"]),
    ('name = "x"\n[training]\nval_ratio = 1.0\n', ["training.val_ratio", "[0, 1)"]),
    ('name = "x"\n[model]\nactivation = "swish"\n', ["model.activation", "sigmoid"]),
    ('name = "x"\n[model]\nhidden = []\n', ["model.hidden"]),
    ('name = "x"\n[model]\nbatchnorm = "yes"\n', ["model.batchnorm"]),
    ('description = "no name"\n', ["name"]),
    ('name = "x"\n[training\n', ["not valid TOML"]),
    ('name = "a/b"\n', ["name = 'a/b'", "letters, digits"]),
    ('name = ".."\n', ["name = '..'"]),
    ('name = "x"\n[training]\nseed = -1\n', ["training.seed", "2**63 - 1"]),
    ('name = "x"\n[training]\nepochs = 100001\n', ["training.epochs", "from 1 to 100000"]),
    ('name = "x"\n[model]\nhidden = [65537]\n', ["model.hidden", "integers from 1 to 65536"]),
    (b'name = "\xe9"\n', ["not UTF-8 text (byte 0xe9 at offset 8)"]),
])
def test_bad_preset_names_file_and_key(tmp_path, text, words):
    path = tmp_path / "bad.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(PhonetuiError) as e:
        presets.load_all([tmp_path])
    assert str(path) in str(e.value)
    for w in words:
        assert w in str(e.value)


def test_unknown_preset_lists_known():
    with pytest.raises(PhonetuiError, match="known: baseline"):
        presets.get(presets.load_all(), "nope")


@pytest.mark.parametrize("key, text, ok", [
    ("lr", "1e-3", True), ("lr", "0", False), ("lr", "abc", False), ("lr", "nan", False),
    ("batch_size", "64", True), ("batch_size", "0", False), ("batch_size", "6.5", False),
    ("epochs", "1", True), ("epochs", "0", False),
    ("val_ratio", "0", True), ("val_ratio", "0.99", True), ("val_ratio", "1", False), ("val_ratio", "-0.1", False),
    ("seed", "7", True), ("seed", "-1", False), ("seed", str(2**63 - 1), True), ("seed", str(2**63), False),
    ("device", "cuda:1", True), ("device", "gpu", False),
    ("precision", "bf16", True), ("precision", "fp16", True), ("precision", "fp8", False),
    ("threads", "auto", True), ("threads", "2", True), ("threads", "0", False), ("threads", "-1", False),
    ("threads", "1.5", False), ("threads", "many", False), ("threads", "02", False),
])
def test_field_rules(key, text, ok):
    value, reason = check_value(TRAIN_RULES, key, text)
    assert (reason is None) == ok and (value is not None) == ok


def test_dropout_drops_p_and_rescales_in_training_only():
    d = models.Dropout(0.5)
    x = torch.ones(200_000)
    out = d.train()(x)
    assert set(out.unique().tolist()) == {0.0, 2.0} and abs((out == 0).float().mean().item() - 0.5) < 0.01
    assert torch.equal(d.eval()(x), x)
    assert any(isinstance(m, models.Dropout) for m in models.build(presets.load_all()["wide-deep"].model, 429))


def test_a_preset_that_is_not_a_regular_file_is_named(tmp_path):
    os.mkfifo(tmp_path / "fifo.toml")
    with pytest.raises(PhonetuiError, match="fifo.toml: not a regular file"):
        presets.load_all([tmp_path])
