"""The homework report (phonetui report): its files, their sizes, and report.md's numbers against
each run's own files; the refusals; the line without matplotlib."""

from __future__ import annotations

import csv
import re
import shutil
import struct
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from phonetui import cli, diagnostics, noise, report, runs, trainer
from phonetui.errors import PhonetuiError


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, demo_dir: Path) -> list[runs.Run]:
    """Two tiny runs on the demo data that differ in lr (trained once for the module)."""
    from phonetui import data
    from tests.conftest import TINY

    demo = data.load(demo_dir)
    where = tmp_path_factory.mktemp("runs")
    return [trainer.train(TINY.with_training(epochs=2, lr=lr), demo, where) for lr in (3e-3, 1e-3)]


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG header (its IHDR chunk)."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def px(size: tuple[float, float]) -> tuple[int, int]:
    return round(size[0] * report.DPI), round(size[1] * report.DPI)


def best_of(run: runs.Run) -> tuple[int, float]:
    """The best epoch and its val acc, read from metrics.csv itself (the first of equals)."""
    rows = list(csv.DictReader((run.path / runs.METRICS).open()))
    best = max(rows, key=lambda r: float(r["val_acc"]))
    return int(best["epoch"]), float(best["val_acc"])


def table(md: str) -> dict[str, dict[str, str]]:
    """report.md's table: {run id: {column: cell}}."""
    lines = [line for line in md.splitlines() if line.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    return {cells[0]: dict(zip(head, cells)) for line in lines[2:]
            if (cells := [c.strip() for c in line.strip("|").split("|")])}


def test_the_report_of_two_runs(trained: list[runs.Run], tmp_path: Path) -> None:
    a, b = trained
    written = report.write(trained, tmp_path / "rep")
    names = {p.name for p in written.files}
    stems = [f"curves-{a.id}", f"curves-{b.id}", "overlay", f"confusion-{a.id}", f"confusion-{b.id}"]
    assert names == {f"{s}.{fmt}" for s in stems for fmt in ("png", "svg")} | {"report.md"}
    assert written.files[-1].name == "report.md" and all(p.parent == tmp_path / "rep" for p in written.files)
    for stem, size in zip(stems, [report.CURVES_SIZE] * 2 + [report.OVERLAY_SIZE] + [report.CONFUSION_SIZE] * 2):
        assert png_size(written.out / f"{stem}.png") == px(size), stem
        root = ET.parse(written.out / f"{stem}.svg").getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
    svg = (written.out / f"confusion-{a.id}.svg").read_text()
    assert all(f">{phone}<" in svg for phone in ("iy", "sil", "hh"))  # phone labels as text, on the axes
    assert "share of the true phone" in svg  # the colour bar's label
    assert f">{a.id}<" in (written.out / "overlay.svg").read_text()  # the legend names each run

    md = (written.out / "report.md").read_text()
    rows = table(md)
    assert set(rows) == {a.id, b.id} and "training.lr" in rows[a.id]  # the setting that differs
    assert [rows[a.id]["training.lr"], rows[b.id]["training.lr"]] == ["0.003", "0.001"]
    assert "model.hidden" not in rows[a.id]  # the same in both: left out
    accs = {}
    for run in trained:
        epoch, acc = best_of(run)
        cell = rows[run.id]["best val acc [95%]"]
        value, lo, hi = map(float, re.fullmatch(r"(\S+) \[(\S+), (\S+)\]", cell).groups())
        assert value == round(acc, 4) and lo <= value <= hi, cell
        ci = noise.interval(diagnostics.val_counts(run))
        assert (lo, hi) == (round(ci.lo, 4), round(ci.hi, 4))
        assert rows[run.id]["best epoch"] == str(epoch) and rows[run.id]["epochs"] == "2"
        assert rows[run.id]["test acc"] == "-"
        accs[run.id] = acc
    top = max(accs, key=accs.get)
    other = next(r for r in accs if r != top)
    assert rows[top]["vs best"] == "best"
    assert re.fullmatch(r"[-+]\S+ \(\S+ to \S+\) pts, (beyond|within) noise", rows[other]["vs best"])
    for stem in stems:  # each figure shown, and its SVG linked
        assert f"]({stem}.png)" in md and f"]({stem}.svg)" in md


def test_one_run_with_test_acc_and_no_diagnostics(trained: list[runs.Run], tmp_path: Path) -> None:
    """A copy of a run without its matrix and counts: no confusion figure, no interval; test acc shown."""
    copy = tmp_path / "runs" / trained[0].id
    shutil.copytree(trained[0].path, copy)
    (copy / diagnostics.MATRIX).unlink()
    (copy / diagnostics.VAL_COUNTS).unlink()
    run = runs.open_run(copy)
    runs.record_prediction(run, copy / "prediction.csv", 0.61234)
    for at in (0.5, 1.0, 1.5, 2.0):  # the points inside the epochs
        run.add_step(runs.StepPoint(round(at + 0.49), at, int(at * 10), 1.5 - at / 4, 0.4 + at / 10, 3e-3))
    written = report.write([run, run], tmp_path / "one")  # the same run twice counts once
    assert sorted(p.name for p in written.files) == sorted([f"curves-{run.id}.png", f"curves-{run.id}.svg", "report.md"])
    row = table((written.out / "report.md").read_text())[run.id]
    assert row["best val acc [95%]"] == f"{best_of(run)[1]:.4f}" and row["test acc"] == "0.6123"
    assert row["vs best"] == "-" and "Confusion" not in (written.out / "report.md").read_text()
    assert ">train (within epochs)<" in (written.out / f"curves-{run.id}.svg").read_text()


def test_an_imported_partial_run_starts_at_its_first_epoch(tmp_path: Path) -> None:
    from phonetui.config import RunConfig
    from tests.conftest import TINY

    rows = [runs.EpochMetrics(e, 0.5 + e / 100, 1.5 - e / 100, 0.55 + e / 200, 1.4, 1e-3, float("nan")) for e in (8, 9, 10)]
    status = runs.RunStatus("finished", 0, 10, 10, rows[-1].val_acc, outcome=runs.Outcome.IMPORTED)
    run = runs.create_imported(tmp_path / "runs", TINY, {"imported": "log"}, "log", status, rows)
    assert isinstance(run.config, RunConfig)
    written = report.write([run], tmp_path / "rep")
    row = table((written.out / "report.md").read_text())[run.id]
    assert row["epochs"] == "8-10" and row["best epoch"] == "10" and row["best val acc [95%]"] == "0.6000"
    assert png_size(written.out / f"curves-{run.id}.png") == px(report.CURVES_SIZE)


def test_refusals_write_nothing(trained: list[runs.Run], tmp_path: Path) -> None:
    empty = runs.create(tmp_path / "runs", trained[0].config, {})
    empty.release()
    with pytest.raises(PhonetuiError, match=f"{re.escape(str(empty.path))}: no epoch recorded yet"):
        report.write([trained[0], empty], tmp_path / "a")
    assert not (tmp_path / "a").exists()
    damaged = tmp_path / "runs" / "damaged"
    shutil.copytree(trained[1].path, damaged)
    (damaged / runs.METRICS).write_text("epoch,train_acc\n1,x\n")
    with pytest.raises(PhonetuiError, match="damaged/metrics.csv: malformed metrics"):
        report.write([trained[0], runs.open_run(damaged)], tmp_path / "b")
    assert not (tmp_path / "b").exists()
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")  # other files are fine
    report.write([trained[0]], taken)
    before = {p.name: p.stat().st_mtime_ns for p in taken.iterdir()}
    with pytest.raises(PhonetuiError, match=r"taken: holds a report already \(report.md\); name another --out"):
        report.write(trained, taken)
    assert {p.name: p.stat().st_mtime_ns for p in taken.iterdir()} == before


def test_without_matplotlib_one_line(trained: list[runs.Run], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    with pytest.raises(PhonetuiError) as e:
        report.write(trained, tmp_path / "rep")
    assert str(e.value) == "the report needs matplotlib: pip install 'phonetui[report]'"
    assert not (tmp_path / "rep").exists()


def test_the_command(trained: list[runs.Run], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                     capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    a, b = trained
    assert cli.main(["report", str(a.path), b.id, "--runs", str(b.path.parent)]) == 0
    out = capsys.readouterr().out.splitlines()
    (folder,) = Path("reports").iterdir()  # the default: reports/<date>-<time>/
    assert out[0] == f"wrote the report to {folder}/ (11 files):" and out[-1] == f"  {folder / 'report.md'}"
    assert all(Path(line.strip()).exists() for line in out[1:])
    assert cli.main(["report", str(a.path), "--out", str(folder)]) == 2
    assert "holds a report already (report.md)" in capsys.readouterr().err
    assert cli.main(["report", "no-such-run"]) == 2
    assert capsys.readouterr().err == "phonetui: error: no-such-run: run folder not found\n"
    assert report.default_out() != folder  # never the same folder twice
