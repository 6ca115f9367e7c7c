"""The diagnosis in the app: live under the Training tab's progress, in History's details pane, and
`a` putting its next step in the form without starting anything."""

from __future__ import annotations

import re
from pathlib import Path

from phonetui import importing
from phonetui.tui.widgets import RunsTable

from .pilot_helpers import feed_run, ready, until
from .test_app import field, status

OVERFIT = [(0.52, 1.61, 0.63, 1.00), (0.66, 1.05, 0.69, 0.90), (0.71, 0.88, 0.72, 0.85), (0.74, 0.80, 0.71, 0.92),
           (0.78, 0.70, 0.71, 0.99), (0.82, 0.60, 0.70, 1.08), (0.86, 0.50, 0.70, 1.20)]  # val loss up from epoch 4


async def test_the_training_tab_says_overfitting_and_a_puts_patience_in_the_form(make_app, workdir: Path) -> None:
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        run = await feed_run(pilot, epochs=7, curve=OVERFIT)
        line = app.query_one("#findings")
        await until(pilot, lambda: "overfitting" in str(line.render()))
        assert line.display and "val loss has risen since epoch 4" in str(line.render())
        assert "a puts the next step in the form: patience 3" in str(line.render())
        assert field(app, "patience").value == "0"
        await pilot.press("a")
        assert field(app, "patience").value == "3" and not app.main.training
        assert status(app) == f"the form has {run.id}'s config with the next step for overfitting: patience 3 (F5 trains it)"


async def test_history_diagnoses_an_imported_student_run(make_app, workdir: Path) -> None:
    blocks = re.findall(r"```\n(.*?)```", (Path(__file__).parents[1] / "data" / "student-runs.md").read_text(), re.S)
    log = workdir / "run3.log"
    log.write_text(blocks[2])
    run = importing.import_log(str(log), Path("runs"), "lr1e-5", ["lr=1e-5", "batch_size=256"])
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await ready(pilot)
        await pilot.press("f2")
        table = app.query_one(RunsTable)
        await until(pilot, lambda: table.selected() is not None and table.selected().id == run.id)
        found = app.query_one("#picked-findings")
        await until(pilot, lambda: "lr-too-low" in str(found.render()))
        assert "after 200 epochs train loss still falls steadily but slowly" in str(found.render())
        await pilot.press("a")
        assert app.main.query_one("TabbedContent").active == "training"
        assert field(app, "lr").value == "0.0001" and field(app, "batch_size").value == "256"  # the run's, then the step
        assert app.main.form.base.preset == "baseline" and not app.main.training
