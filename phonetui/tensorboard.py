"""TensorBoard event files for each run (the `tensorboard` extra; off unless asked for): every
epoch's train/val accuracy and loss and the lr as scalars, written as the epoch ends, the points
inside each epoch (steps.csv's) under step/ with the optimizer step as x, and the run's
settings as hparams with its final metrics, so `tensorboard --logdir runs` shows phonetui runs
beside a student's other work. The events live in the run folder itself, one TensorBoard run each.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from .errors import PhonetuiError, first_line, note
from .events import Cancelled, EpochEnd, Finished, RunStarted, WithinEpoch

ENV = "PHONETUI_TENSORBOARD"  # "1": the --tensorboard flag's default
SCALARS = {"train/acc": "train_acc", "train/loss": "train_loss", "val/acc": "val_acc", "val/loss": "val_loss",
           "lr": "lr"}
STEP_SCALARS = {"step/train_loss": "train_loss", "step/train_acc": "train_acc", "step/lr": "lr"}  # x: optimizer steps


def default() -> bool:
    """The `--tensorboard` flag's default: $PHONETUI_TENSORBOARD=1 (a setting for every command; the
    flag itself reaches the processes phonetui starts, --jobs workers and served apps)."""
    return os.environ.get(ENV, "") not in ("", "0")


def available() -> str | None:
    """None, or why event files cannot be written here."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return "TensorBoard event files need the tensorboard package: pip install 'phonetui[tensorboard]'"
    return None


def tee(listen, say: Callable[[str], None] = note):
    """A trainer listener that writes each run's events, then passes every event on to `listen`. A
    write that fails (a full disk, a folder gone) stops the run's event files, not its training:
    `say` hears it once, in one line naming the run."""
    if why := available():
        raise PhonetuiError(why)
    from torch.utils.tensorboard import SummaryWriter

    _quiet_writer_threads()


    writers: dict[str, Any] = {}  # "run": the writer of the run in progress
    current: dict[str, Any] = {}  # "run": the run in progress (for the line that names it)

    def write(what: Callable[[], None]) -> None:
        try:
            what()
        except Exception as err:  # noqa: BLE001 - OSError, or tensorboard's own wrapping of one
            writer = writers.pop("run", None)
            say(f"{current.get('run', 'a run')}: TensorBoard event files stopped, the training goes on "
                f"(cannot write: {_why(err)})")
            try:
                if writer is not None:
                    writer.close()
            except Exception:  # noqa: BLE001 - it could not write before either
                pass

    def epoch(m) -> None:
        for tag, field in SCALARS.items():
            if (value := getattr(m, field)) is not None:
                writers["run"].add_scalar(tag, value, m.epoch)
        writers["run"].flush()  # live: TensorBoard shows the epoch as soon as it ends

    def point(p) -> None:
        for tag, field in STEP_SCALARS.items():
            writers["run"].add_scalar(tag, getattr(p, field), p.step)
        writers["run"].flush()

    def on(e) -> None:
        if isinstance(e, RunStarted):
            writers.pop("run", None)
            current["run"] = e.run.path
            write(lambda: writers.__setitem__("run", SummaryWriter(str(e.run.path))))
        elif isinstance(e, WithinEpoch) and "run" in writers:
            write(lambda: point(e.point))
        elif isinstance(e, EpochEnd) and "run" in writers and not e.earlier:
            write(lambda: epoch(e.metrics))
        elif isinstance(e, (Finished, Cancelled)) and "run" in writers:
            write(lambda: _hparams(writers["run"], e.run))
            writers.pop("run", None)
        listen(e)

    return on


def _quiet_writer_threads() -> None:
    """TensorBoard's writer thread ends on a failed write by raising it, which Python prints as a
    traceback; the next write in the training thread raises it again, and `tee` says it in a line."""
    import threading

    from tensorboard.summary.writer.event_file_writer import _AsyncWriterThread

    before = threading.excepthook
    if getattr(before, "phonetui", False):
        return

    def hook(args) -> None:
        if not isinstance(args.thread, _AsyncWriterThread):
            before(args)

    hook.phonetui = True
    threading.excepthook = hook


def _why(e: BaseException) -> str:
    """The OS's words for a failed write, where the error carries them."""
    for c in (e, e.__cause__, e.__context__):
        if isinstance(c, OSError) and c.strerror:
            return c.strerror
    return first_line(e, 120)


def _hparams(writer, run) -> None:
    """The run's settings and final metrics in TensorBoard's HParams tab, in the run's own folder."""
    from torch.utils.tensorboard.summary import hparams

    t, m = run.config.training, run.config.model
    params = {"preset": run.config.preset, "model": m.summary(), **{
        k: v for k, v in vars(t).items() if isinstance(v, (int, float, str, bool))}}
    best = run.status.best_val_acc
    metrics = {"hparams/best_val_acc": best if best is not None else float("nan"),
               "hparams/epochs_done": float(run.status.epochs_done)}
    for summary in hparams(params, metrics):
        writer.file_writer.add_summary(summary)
    for tag, value in metrics.items():
        writer.add_scalar(tag, value, run.status.epochs_done)
    writer.close()
