"""What the status line says about a trainer event, as (text, kind, toast) or None (no widgets)."""

from __future__ import annotations

Line = tuple[str, str, bool]


def event_line(e, best_epoch: int | None) -> Line | None:
    """The status line for trainer event `e` (best_epoch: the run's best so far, for a stop)."""
    from .. import trainer  # loaded by the worker that sent the event

    if isinstance(e, trainer.RunStarted):
        note = e.run.epochs_note
        return (f"training {e.run.path} on {e.device}: {e.n_train:,} train / {e.n_val:,} val rows"
                + (f" ({note})" if note else ""), "info", False)
    if isinstance(e, trainer.EpochEnd):
        m = e.metrics
        val = "" if m.val_acc is None else f" · val acc {m.val_acc:.4f} loss {m.val_loss:.4f}"
        return f"epoch {m.epoch}/{e.epochs}: train acc {m.train_acc:.4f} loss {m.train_loss:.4f}{val}", "info", False
    if isinstance(e, trainer.BestSaved) and e.val_acc is not None:
        return f"saving model with acc {e.val_acc:.3f}", "ok", False
    if isinstance(e, trainer.Finished):
        best = e.run.status.best_val_acc
        at = f": best val acc {best:.4f} at epoch {e.run.status.best_epoch}" if best is not None else ""
        return f"finished {e.run.path}{at} · F9 exports the CSV", "ok", True
    if isinstance(e, trainer.Cancelled) and e.run.status.outcome == "pruned":
        return f"{e.run.id}: {e.run.status.message}", "info", False
    if isinstance(e, trainer.Cancelled):
        kept = f"the best model (epoch {best_epoch}) is kept" if best_epoch else "no model was saved yet"
        return f"stopped {e.run.path}: {kept} · F10 on it in History resumes it", "ok", True
    return None
