"""What the CLI prints: the course's epoch lines and a progress bar as a run trains, tables that
never cut a value, leaderboards, a run's per-phone report. The commands in phonetui.cli parse, call
the core and hand it these."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.table import Column, Table

from .errors import PhonetuiError

console = Console(highlight=False, soft_wrap=True)


def print_table(table: Table) -> None:
    """A table with no value ever cut: as wide as its widest row needs, on a terminal too (one
    narrower than that wraps the lines) and piped (scripts read every value)."""
    need = Console(width=10_000).measure(table).maximum
    if console.is_terminal and need <= console.width:
        console.print(table)
    else:
        Console(highlight=False, width=need, force_terminal=console.is_terminal).print(table)


@contextmanager
def synthesis_bar():
    """A progress bar for speech synthesis; yields the callback that moves it (done, total)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("synthesizing utterances"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


PLAIN_EVERY_S = 30.0  # a progress line this often when stdout is a file or a pipe (no bar there)


@contextmanager
def printer(tensorboard: bool = False):
    """A trainer listener printing the course's log lines, with a progress bar within each epoch (the
    running loss and accuracy, speed, and when the epoch ends); where stdout is not a terminal
    (`> log`, `| tee`) the bar is a line every PLAIN_EVERY_S instead."""
    import time

    from rich.progress import BarColumn, Progress, TextColumn

    from . import runs
    from . import tensorboard as tb
    from .events import BestSaved, Cancelled, EpochEnd, Event, Outcome, RunStarted, clock
    from .events import Progress as Step
    from .trainer import log_line

    bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[speed]}"),
                   TextColumn("epoch ends in {task.fields[eta]}"), console=console, transient=True,
                   disable=not console.is_terminal)
    task = bar.add_task("", total=1, speed="", eta="-")
    plain = {"last": time.monotonic()}  # when the last plain progress line was printed

    def listen(e: Event) -> None:
        match e:
            case RunStarted(run=run):
                console.print(f"run {run.path} · preset {run.config.preset} · device {e.device} · "
                              f"{e.n_train:,} train / {e.n_val:,} val rows")
                if note := run.epochs_note:
                    console.print(note)
            case Step():
                bar.update(task, description=f"epoch {e.epoch}/{e.epochs}{e.means()}" + (f" · {e.device}" if e.device else ""),
                           completed=e.frames, total=e.total, speed=f"{e.frames_per_s:,.0f} frames/s", eta=clock(e.eta_s))
                if not console.is_terminal and time.monotonic() - plain["last"] >= PLAIN_EVERY_S:
                    plain["last"] = time.monotonic()
                    console.print(e.line())
            case EpochEnd(metrics=m):
                bar.update(task, completed=0)
                plain["last"] = time.monotonic()
                console.print(log_line(m, e.epochs) + f"  ({m.seconds:.1f} s"
                              + (", trained before the resume)" if e.earlier else ")"))
            case BestSaved(val_acc=acc) if acc is not None:
                console.print(e.line())
            case Cancelled(run=run) if run.status.outcome == Outcome.PRUNED:
                console.print(f"{run.status.message}: {run.path}")
            case Cancelled(run=run):
                saved = (run.path / runs.CHECKPOINT).exists()
                console.print(f"stopped: the best model (epoch {run.status.best_epoch}) is kept in {run.path}" if saved
                              else f"stopped before an epoch ended: no model was saved yet ({run.path})")
                if run.status.epochs_done:
                    console.print(f"`phonetui resume {run.path}` continues it")

    with bar:
        yield tb.tee(listen) if tensorboard else listen


def study_board(study) -> None:
    """A study's leaderboard: every trial from every worker and machine, with where it ran."""
    from . import diagnostics, search

    board = search.leaderboard(study)
    keys, rows = search.board_rows(board)
    vs = diagnostics.versus_best_at([path for _, path in rows])
    table = Table("rank", "trial", "state", *keys, "best val acc", "vs best: val acc, 95%", "host",
                  Column("run", no_wrap=True), box=None)
    for cells, run in rows:
        shown = run.relative_to(Path.cwd()) if run is not None and run.is_relative_to(Path.cwd()) else run
        table.add_row(*cells[:-1], vs.get(run, "-"), cells[-1], str(shown or "-"))
    console.print(f"study {study.study_name}: {len(board)} trials")
    print_table(table)


def leaderboard(s) -> None:
    from . import diagnostics, sweep

    ranked = sweep.leaderboard(s)
    vs = diagnostics.versus_best([run for _, run in ranked if run is not None])
    table = Table("rank", "run", *s.grid, "best val acc", "vs best: val acc, 95%", "test acc", "status", box=None)
    table.columns[1].no_wrap = True
    for rank, (trial, run) in enumerate(ranked, 1):
        best = run.status.best_val_acc if run else None
        test = run.test_acc if run else None
        table.add_row(str(rank), trial.run or "-", *(str(trial.values[k]) for k in s.grid),
                      "-" if best is None else f"{best:.4f}", vs.get(run.id, "-") if run else "-",
                      "-" if test is None else f"{test:.4f}", run.state if run else "not run")
    console.print(f"sweep {s.id}: leaderboard")
    print_table(table)


def report(p) -> None:
    acc = f", test acc {p.test_acc:.4f}" if p.test_acc is not None else ""
    console.print(f"wrote {p.path} ({p.rows:,} rows{acc})")


def findings(found: list) -> None:
    """The diagnosis of a run: a finding a line, its id first (`phonetui runs --show` and the end of `train`)."""
    if not found:
        console.print("diagnosis: nothing to flag in these epochs", markup=False)
    for f in found:
        console.print(f"diagnosis [{f.id}] {f.evidence}", markup=False)
        console.print(f"  next: {f.suggestion}", markup=False)


def report_written(written) -> None:
    """`phonetui report`: the folder, then each file written (report.md last)."""
    console.print(f"wrote the report to {written.out}/ ({len(written.files)} files):", markup=False)
    for path in written.files:
        console.print(f"  {path}", markup=False)


def show(run) -> int:
    """A run: its diagnosis, then its best model class by class (val accuracy per phone, worst first,
    and the confused pairs) where it has one (an imported run has none)."""
    from . import diagnosis, diagnostics

    best = run.status.best_val_acc
    console.print(f"{run.id} · preset {run.config.preset} · best val acc "
                  f"{'-' if best is None else f'{best:.4f}'} at epoch {run.status.best_epoch}")
    findings(diagnosis.of_run(run))
    phones, pairs = diagnostics.read(run)
    if not phones:
        console.print("no per-phone diagnostics: " + ("an imported run has no model" if run.imported else
                                                      "they come with the first validated best model"))
        return 0
    table = Table("phone", "val frames", "accuracy", box=None)
    for p in sorted(phones, key=lambda p: (p.accuracy is None, p.accuracy or 0)):
        table.add_row(p.phone, f"{p.frames:,}", "-" if p.accuracy is None else f"{p.accuracy:.3f}")
    pairs_table = Table("true", "predicted as", "frames", "share of true", box=None)
    for c in pairs:
        pairs_table.add_row(c.true, c.predicted, f"{c.frames:,}", f"{c.share:.3f}")
    console.print(table, pairs_table)
    return 0


def sweeps(listed: list) -> None:
    """`sweep --list`: each readable sweep's grid and trials left, then why the others cannot be read."""
    table = Table(Column("id", no_wrap=True), "preset", "grid", "trials", "left", box=None)
    for s in listed:
        if not isinstance(s, PhonetuiError):
            grid = " ".join(f"{k}={','.join(map(str, v))}" for k, v in s.grid.items())
            table.add_row(s.id, s.preset, grid, str(len(s.trials)), str(len(s.pending())))
    print_table(table)
    for e in listed:
        if isinstance(e, PhonetuiError):
            console.print(str(e))


def runs(listed: list) -> None:
    """`phonetui runs`: a line a run (a damaged one with its state), then why each damaged one is."""
    from .runs import DamagedRun

    table = Table("id", "preset", "lr", "batch", "epochs", "best val acc", "test acc", "status", box=None)
    for r in listed:
        if isinstance(r, DamagedRun):
            table.add_row(r.id, "-", "-", "-", "-", "-", "-", r.state)
            continue
        t, best, test = r.config.training, r.status.best_val_acc, r.test_acc
        table.add_row(r.id, r.config.preset, f"{t.lr:g}", str(t.batch_size), f"{r.status.epochs_done}/{t.epochs}",
                      "-" if best is None else f"{best:.4f}", "-" if test is None else f"{test:.4f}", r.state)
    print_table(table)
    for r in listed:
        if isinstance(r, DamagedRun):
            console.print(f"{r.path}: damaged: {r.reason}")


def presets(found: dict) -> None:
    """`phonetui presets`: name, description and parameters of each."""
    table = Table("name", "description", "params", box=None)
    for name, p in sorted(found.items()):
        table.add_row(name, p.description, f"{p.model.param_count():,}")
    console.print(table)
