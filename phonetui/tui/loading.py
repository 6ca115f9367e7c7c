"""Loading in the background, and the line on top that shows it: the data folder is opened (the
demo set synthesized once), then torch is imported and its devices listed, in a thread worker that
answers with DataLoaded / DataFailed and TorchReady, so the first frame comes before either."""

from __future__ import annotations

from rich.markup import escape
from textual.dom import DOMNode
from textual.widgets import Static

from ..errors import one_line
from .messages import DataFailed, DataLoaded, Notice, TorchReady


def load(node: DOMNode, data_dir) -> None:
    """Open `data_dir` (None: the demo set), then import torch, in a thread worker of `node` (the
data line, which takes what it posts before the screen does)."""
    def say(text: str) -> None:
        node.post_message(Notice(text))

    def work() -> None:
        try:
            from .. import data

            def progress(done: int, total: int) -> None:
                say(f"synthesizing the speech demo set (once): {done:,}/{total:,} utterances")

            node.post_message(DataLoaded(data.load(data_dir or data.default_dir(say=say, progress=progress))))
        except Exception as e:  # noqa: BLE001 - shown in the data line
            node.post_message(DataFailed(one_line(e)))
        try:
            import torch

            from .. import trainer  # noqa: F401 - imported now so that Start is instant

            devices = {"auto", "cpu"}
            if torch.cuda.is_available():
                devices |= {"cuda"} | {f"cuda:{i}" for i in range(torch.cuda.device_count())}
            if torch.backends.mps.is_available():
                devices.add("mps")
            node.post_message(TorchReady(frozenset(devices)))
        except Exception as e:  # noqa: BLE001
            node.post_message(TorchReady(frozenset(), one_line(e)))

    node.run_worker(work, thread=True, exit_on_error=False, group="load")


class DataLine(Static):
    """The data set (its split for the form's VAL_RATIO) and torch's devices, or what is loading."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.data = None
        self.note = "loading data…"
        self.devices: frozenset[str] | None = None

    def show(self, val_ratio: float | None = None, sequence: bool = False) -> None:
        if self.data is not None:
            line = escape(self.data.describe(val_ratio, sequence)).replace("DEMO", "[reverse $warning] DEMO [/]", 1)
        else:
            line = escape(self.note)
        devices = "loading torch…" if self.devices is None else ", ".join(sorted(self.devices - {"auto"}))
        self.update(f"{line}  [dim]· {devices}[/]")
        self.set_class(self.data is None and not self.note.startswith("loading"), "error")

    def on_data_loaded(self, message: DataLoaded) -> None:  # then on up to the screen, for the form
        self.data, self.note = message.data, ""

    def on_data_failed(self, message: DataFailed) -> None:
        self.note = message.error

    def on_torch_ready(self, message: TorchReady) -> None:
        self.devices = message.devices
