"""TensorBoard event files for each run (the `tensorboard` extra; off unless asked for): every
epoch's train/val accuracy and loss and the lr as scalars, written as the epoch ends, and the run's
settings as hparams with its final metrics, so `tensorboard --logdir runs` shows phonetui runs
beside a student's other work. The events live in the run folder itself, one TensorBoard run each.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator

from .errors import PhonetuiError

ENV = "PHONETUI_TENSORBOARD"  # "1": write event files (`--tensorboard` sets it, so --jobs workers inherit it)
SCALARS = {"train/acc": "train_acc", "train/loss": "train_loss", "val/acc": "val_acc", "val/loss": "val_loss",
           "lr": "lr"}


def wanted() -> bool:
    return os.environ.get(ENV, "") not in ("", "0")


@contextmanager
def enabled(on: bool) -> Iterator[None]:
    """Turn event files on for what runs inside (a command's `--tensorboard`), as the setting says."""
    if not on:
        yield
        return
    before = os.environ.get(ENV)
    os.environ[ENV] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before


def available() -> str | None:
    """None, or why event files cannot be written here."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return "TensorBoard event files need the tensorboard package: pip install 'phonetui[tensorboard]'"
    return None


def tee(listen):
    """A trainer listener that writes each run's events, then passes every event on to `listen`."""
    if why := available():
        raise PhonetuiError(why)
    from torch.utils.tensorboard import SummaryWriter

    from .trainer import Cancelled, EpochEnd, Finished, RunStarted  # here: the CLI imports this module early

    writers: dict[str, Any] = {}  # "run": the writer of the run in progress

    def on(e) -> None:
        if isinstance(e, RunStarted):
            writers["run"] = SummaryWriter(str(e.run.path))
        elif isinstance(e, EpochEnd) and "run" in writers and not e.earlier:
            m = e.metrics
            for tag, field in SCALARS.items():
                if (value := getattr(m, field)) is not None:
                    writers["run"].add_scalar(tag, value, m.epoch)
            writers["run"].flush()  # live: TensorBoard shows the epoch as soon as it ends
        elif isinstance(e, (Finished, Cancelled)) and "run" in writers:
            _hparams(writers.pop("run"), e.run)
        listen(e)

    return on


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
