"""Exports in the background: a run's or an ensemble's test-set CSV, and an Optuna study's
leaderboard. Each runs in a thread worker of `node` (the screen) and answers with a message
(Predicted, PredictFailed) or a dialog; prediction is imported inside the worker."""

from __future__ import annotations

from pathlib import Path

from textual.dom import DOMNode

from ..errors import one_line
from .dialogs import StudyBoard
from .messages import Notice, Predicted, PredictFailed


def refusal(run, data, busy: Path | None, on_history: bool) -> str | None:
    """Why `run` (History's selected run, or this session's) cannot be exported now, or None."""
    if run is None:
        return "nothing to export: " + ("no run selected" if on_history else
                                        "no run trained in this session; select one in History (F2), then F9")
    if run.state == "damaged":
        return f"cannot export: {run.id} is damaged: {run.reason}"
    if data is None:
        return "cannot export: no data loaded"
    if run.path == busy:
        return "this run is still training: stop it (F6) or wait, then export"
    return None


def _say(node: DOMNode):
    """Where an export's notes (a damaged cache computed again) go: the status line and the Log."""
    return lambda line: node.post_message(Notice(line, "error"))


def _worker(node: DOMNode, work, group: str) -> None:
    node.run_worker(work, thread=True, exclusive=True, exit_on_error=False, group=group)


def run_csv(node: DOMNode, run, data, device: str) -> None:
    """Predict the test set with `run`'s best model and write its CSV."""
    def work() -> None:
        try:
            from ..predict import predict

            node.post_message(Predicted(run, predict(run, data, device=device, say=_say(node))))
        except Exception as e:  # noqa: BLE001 - one line in the app
            node.post_message(PredictFailed(one_line(e)))
    _worker(node, work, "predict")


def ensemble_csv(node: DOMNode, members: list, data, out: Path, decode: str, weights: str) -> None:
    """Write one CSV from the members' test posteriors (predict.predict_ensemble)."""
    def work() -> None:
        try:
            from ..predict import predict_ensemble

            node.post_message(Predicted(None, predict_ensemble(members, data, out, decode=decode, weights=weights,
                                                               follow_link=False, say=_say(node))))
        except Exception as e:  # noqa: BLE001
            node.post_message(PredictFailed(one_line(e)))
    _worker(node, work, "predict")


def study_board(node: DOMNode, runs_dir: Path, name: str) -> None:
    """Open a dialog with the study's leaderboard (read in the thread: the storage may be a server)."""
    def work() -> None:
        try:
            from .. import search

            rows = search.leaderboard(search.open_study(runs_dir, name, create=False))
            node.app.call_from_thread(node.app.push_screen, StudyBoard(name, rows))
        except Exception as e:  # noqa: BLE001
            node.post_message(Notice(f"study {name}: {one_line(e)}", "error"))
    _worker(node, work, "study")
