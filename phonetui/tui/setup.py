"""The left pane: the presets (a list; a one-line select on a narrow screen) and the form they fill."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import OptionList, Select
from textual.widgets.option_list import Option

from .. import presets as preset_store
from ..config import RunConfig, as_asked
from ..errors import PhonetuiError
from .form import ConfigForm
from .messages import Notice
from .settings import Settings


class PresetList(OptionList):
    """Every preset: name, parameter count and description; selecting one fills the form."""

    def show(self, presets: dict[str, RunConfig], current: str) -> None:
        self.clear_options()
        for name, cfg in sorted(presets.items()):
            head = Text.assemble((name, "bold"), f"  {cfg.model.param_count():,} params")
            description = Text(cfg.description or "-", "dim")
            self.add_option(Option(Text("\n").join([head, description]), id=name))
        if current in presets:
            self.highlighted = sorted(presets).index(current)


class SetupPane(VerticalScroll, can_focus=False):  # its fields scroll into view as they get focus
    """The presets and the form; `presets` are those loaded (the built-in ones and extra folders)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.presets: dict[str, RunConfig] = {}

    def compose(self) -> ComposeResult:
        yield PresetList(id="presets")
        yield Select([], prompt="preset", allow_blank=True, compact=True, id="preset-select")
        yield ConfigForm(id="form")

    def say(self, text: str, kind: str = "info") -> None:
        self.post_message(Notice(text, kind))

    def start(self, settings: Settings) -> None:
        """Load the presets and fill the form with the asked one and the values typed at launch."""
        try:
            self.presets = preset_store.load_all(list(settings.presets))
        except PhonetuiError as e:
            self.say(str(e), "error")
        base = self.presets.get(settings.preset)
        if base is None:
            if self.presets:
                self.say(f"unknown preset '{settings.preset}' (known: {', '.join(sorted(self.presets))})", "error")
            base = next(iter(sorted(self.presets.items())), ("", RunConfig()))[1]
        self.query_one(PresetList).show(self.presets, base.preset)
        picker = self.query_one(Select)
        picker.set_options([(f"{name}  {cfg.model.param_count():,} params", name) for name, cfg in sorted(self.presets.items())])
        if base.preset in self.presets:
            picker.value = base.preset
        form = self.query_one(ConfigForm)
        form.set_search(settings.trials, settings.jobs)
        form.fill(base, f"preset {base.preset}", {k: str(v) for k, v in as_asked(settings.given).items()})

    @on(OptionList.OptionSelected, "#presets")
    def preset_chosen(self, event: OptionList.OptionSelected) -> None:
        self.use_preset(event.option.id)

    @on(Select.Changed, "#preset-select")
    def preset_picked(self, event: Select.Changed) -> None:
        """Choosing the form's own preset changes nothing."""
        if event.value in self.presets and event.value != self.query_one(ConfigForm).base.preset:
            self.use_preset(event.value)

    def shows(self, name: str) -> None:
        """The preset list and picker on `name`, the form's preset now (a run's config loaded with F3),
        or the picker blank where that preset is not loaded here."""
        self.query_one(PresetList).show(self.presets, name)
        picker = self.query_one(Select)
        if name in self.presets:
            picker.value = name
        else:
            picker.clear()

    def use_preset(self, name: str) -> None:
        cfg = self.presets[name]
        self.query_one(ConfigForm).fill(cfg, f"preset {cfg.preset}")
        self.say(f"preset {cfg.preset}: {cfg.description}")
