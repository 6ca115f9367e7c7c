"""What the status line says about a trainer event, as (text, kind, toast) or None (no widgets)."""

from __future__ import annotations

from ..events import BestSaved, Cancelled, EpochEnd, Event, Finished, Outcome, RunStarted

Line = tuple[str, str, bool]


def event_line(e: Event, best_epoch: int | None) -> Line | None:
    """The status line for trainer event `e` (best_epoch: the run's best so far, for a stop)."""
    match e:
        case RunStarted(run=run):
            note = run.epochs_note
            return f"training {run.id}" + (f" ({note})" if note else ""), "info", False
        case EpochEnd(metrics=m):
            val = "" if m.val_acc is None else f" · val acc {m.val_acc:.4f} loss {m.val_loss:.4f}"
            return f"epoch {m.epoch}/{e.epochs}: train acc {m.train_acc:.4f} loss {m.train_loss:.4f}{val}", "info", False
        case BestSaved(val_acc=acc) if acc is not None:
            return e.line(), "ok", False
        case Finished(run=run):
            best = run.status.best_val_acc
            at = f": best val acc {best:.4f} at epoch {run.status.best_epoch}" if best is not None else ""
            return f"finished {run.id}{at} · F9 exports the CSV", "ok", True
        case Cancelled(run=run) if run.status.outcome == Outcome.PRUNED:
            return f"{run.id}: {run.status.message}", "info", False
        case Cancelled(run=run):
            kept = f"the best model (epoch {best_epoch}) is kept" if best_epoch else "no model was saved yet"
            return f"stopped {run.id}: {kept} · F10 on it in History resumes it", "ok", True
    return None
