"""The homework report from the app: the palette's command on History's marked runs, in a thread."""

from __future__ import annotations

from pathlib import Path

from tests.tui.pilot_helpers import ready, until


def status(app) -> str:
    return str(app.query_one("#status").render())


async def test_the_palette_reports_the_marked_runs(make_app, workdir: Path) -> None:
    from phonetui import data, presets, trainer

    tiny = presets.get(presets.load_all([Path("tiny-presets")]), "tiny").with_training(epochs=1)
    demo = data.load(Path("demo"))
    a, b = (trainer.train(tiny.with_training(lr=lr), demo, Path("runs")) for lr in (1e-3, 3e-3))
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        await pilot.press("f2", "space", "down", "space")
        await pilot.press("ctrl+p", *"report the marked")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await until(pilot, lambda: status(app).startswith("wrote the report to "), timeout=120)
        (folder,) = Path("reports").iterdir()
        assert status(app) == f"wrote the report to {folder}/ (11 files: report.md and its figures)"
        md = (folder / "report.md").read_text()
        assert all(f"| {r.id} |" in md for r in (a, b)) and "](overlay.png)" in md
        await pilot.press("space", "up", "space")  # none marked: the selected run alone
        app.main.report_runs()
        await until(pilot, lambda: "(5 files" in status(app), timeout=120)
        assert len(list(Path("reports").iterdir())) == 2  # a new folder: never over the first
