"""Command line: `phonetui` opens the TUI; subcommands drive the same core headless."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.table import Column, Table

from . import __version__, presets
from .config import EDITABLE, RunConfig, as_asked, flag_value
from .errors import PhonetuiError, one_line

console = Console(highlight=False, soft_wrap=True)


def _print_table(table: Table) -> None:
    """A table with no value ever cut: as wide as its widest row needs, on a terminal too (one
    narrower than that wraps the lines) and piped (scripts read every value)."""
    need = Console(width=10_000).measure(table).maximum
    if console.is_terminal and need <= console.width:
        console.print(table)
    else:
        Console(highlight=False, width=need, force_terminal=console.is_terminal).print(table)


def _add_run_options(p: argparse.ArgumentParser, sub: bool) -> None:
    """Options shared by the TUI and `train` (a subcommand's copy must not mask the top level's)."""
    default = argparse.SUPPRESS if sub else None
    p.add_argument("--data", type=Path, default=default, help="folder with train_11.npy, train_label_11.npy, test_11.npy")
    p.add_argument("--runs", type=Path, default=argparse.SUPPRESS if sub else Path("runs"), help="runs folder (./runs)")
    p.add_argument("--presets", type=Path, action="append", default=default, help="extra presets folder (repeatable)")
    p.add_argument("--preset", default=argparse.SUPPRESS if sub else "baseline", help="preset name (baseline)")
    for key in EDITABLE:
        p.add_argument("--" + key.replace("_", "-"), dest=key, default=default, metavar="V",
                       help=f"override training.{key}")
    _add_tensorboard(p, sub)


def _add_tensorboard(p: argparse.ArgumentParser, sub: bool) -> None:
    p.add_argument("--tensorboard", action="store_true", default=argparse.SUPPRESS if sub else False,
                   help="also write each run's TensorBoard event files into its folder ($PHONETUI_TENSORBOARD=1)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="phonetui", description="Frame-level phoneme classification experiment runner. "
                                "With no subcommand, opens the terminal app.")
    p.add_argument("--version", action="version", version=f"phonetui {__version__}")
    _add_run_options(p, sub=False)
    p.add_argument("--trials", type=int, default=8, help="trials of an Optuna search started in the app (8)")
    p.add_argument("--jobs", type=int, default=1, help="trials at once of an Optuna search started in the app (1)")
    sub = p.add_subparsers(dest="command")
    t = sub.add_parser("train", help="train a preset headless, printing the course's log lines")
    _add_run_options(t, sub=True)
    t.add_argument("--predict", action="store_true", help="export the test-set CSV with the best model at the end")
    rr = sub.add_parser("resume", help="continue a stopped or interrupted run from its last finished epoch")
    rr.add_argument("run_dir", type=Path, metavar="RUN", help="a run folder, or its id in the runs folder")
    rr.add_argument("--runs", type=Path, default=argparse.SUPPRESS, help="the runs folder of a bare id (./runs)")
    _add_tensorboard(rr, sub=True)
    rr.add_argument("--data", type=Path, default=argparse.SUPPRESS, help="data folder (the run's own by default)")
    rr.add_argument("--predict", action="store_true", help="export the test-set CSV with the best model at the end")
    pr = sub.add_parser("predict", help="predict the test set with a run's best model and write the CSV; "
                        "several runs: their averaged posteriors (an ensemble)")
    pr.add_argument("run_dir", type=Path, nargs="+", metavar="RUN", help="run folders, or their ids in the runs folder")
    pr.add_argument("--runs", type=Path, default=argparse.SUPPRESS, help="the runs folder of a bare id (./runs)")
    pr.add_argument("--data", type=Path, default=argparse.SUPPRESS)
    pr.add_argument("--out", type=Path, help="CSV path (RUN_DIR/prediction.csv; an ensemble: RUNS/ensemble-<time>.csv)")
    pr.add_argument("--decode", choices=("argmax", "viterbi"), default="argmax",
                    help="viterbi: decode along each utterance with phone transitions from the training labels")
    pr.add_argument("--weights", choices=("equal", "val"), default="equal",
                    help="an ensemble's weights: equal, or chosen on the validation split the runs share")
    pr.add_argument("--device", default="auto")
    sw = sub.add_parser("sweep", help="train a preset over every combination of comma-separated values "
                        "(e.g. --lr 1e-3,3e-4 --batch-size 256,512), each an ordinary run, then rank them")
    _add_run_options(sw, sub=True)
    sw.add_argument("--predict", action="store_true", help="export each trial's test-set CSV")
    sw.add_argument("--continue", dest="sweep_id", metavar="ID", help="run what is left of sweep ID")
    sw.add_argument("--list", action="store_true", help="list the sweeps in the runs folder")
    sw.add_argument("--drop", metavar="ID", help="forget sweep ID and its runs left to train (its runs stay)")
    sw.add_argument("--jobs", type=int, default=1, help="trials at once, each its own process with its share of "
                    "the CPU threads (1)")
    sw.add_argument("--trial", type=int, help=argparse.SUPPRESS)  # a --jobs worker: train trial K of --continue ID
    se = sub.add_parser("search", help="an Optuna study over a preset: ranges LO:HI or lists A,B on any editable "
                        "flag (e.g. --lr 1e-4:1e-2 --batch-size 128,256), poor trials pruned")
    _add_run_options(se, sub=True)
    se.add_argument("--trials", type=int, default=8, help="trials to run now (8)")
    se.add_argument("--study", help="study name (the preset's name); an existing study continues")
    se.add_argument("--storage", help="Optuna storage URL, e.g. postgresql://user:password@host/db (default: "
                    "$PHONETUI_STORAGE, else SQLite in the runs folder)")
    se.add_argument("--predict", action="store_true", help="export the test-set CSV of each trial that completes")
    se.add_argument("--jobs", type=int, default=1, help="trials at once, each its own process with its share of "
                    "the CPU threads (1)")
    se.add_argument("--list", action="store_true", help="print the study's leaderboard (every trial, from every "
                    "machine) without training")
    se.add_argument("--job", help=argparse.SUPPRESS)  # a --jobs worker: no header, no leaderboard
    sv = sub.add_parser("serve", help="serve the app in a web browser (textual-serve): for a remote machine or a "
                        "notebook without a terminal")
    _add_run_options(sv, sub=True)
    sv.add_argument("--trials", type=int, default=argparse.SUPPRESS, help="as for the app")
    sv.add_argument("--jobs", type=int, default=argparse.SUPPRESS, help="as for the app")
    sv.add_argument("--host", default="localhost", help="address to listen on (localhost; 0.0.0.0 for every one)")
    sv.add_argument("--port", type=int, default=8000, help="port (8000)")
    sv.add_argument("--no-token", action="store_true", help="admit browsers without the URL's random token "
                    "(anyone who reaches the port can then train and delete runs)")
    sv.add_argument("--max-apps", type=int, default=4, help="app processes at once, one per browser tab (4)")
    ps = sub.add_parser("presets", help="list presets")
    ps.add_argument("--presets", type=Path, action="append", default=argparse.SUPPRESS)
    rs = sub.add_parser("runs", help="list runs, or show one run's per-phone diagnostics")
    rs.add_argument("--runs", type=Path, default=argparse.SUPPRESS)
    rs.add_argument("--show", type=Path, metavar="RUN", help="per-phone val accuracy and most confused pairs "
                    "(RUN: a run folder or its id)")
    d = sub.add_parser("demo-data", help="write a demo data set in the course's format (synthesized speech by default)")
    d.add_argument("--out", type=Path, required=True)
    kind = d.add_mutually_exclusive_group()
    kind.add_argument("--speech", action="store_true", help="English sentences spoken by eSpeak NG (the default)")
    kind.add_argument("--simulated", action="store_true", help="the fast Markov-chain generator")
    d.add_argument("--utterances", type=int, help="speech: train utterances (1200)")
    d.add_argument("--test-utterances", type=int, help="speech: test utterances, unseen voices and sentences (400)")
    d.add_argument("--train-rows", type=int, help="simulated: train rows (400,000)")
    d.add_argument("--test-rows", type=int, help="simulated: test rows (100,000)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--force", action="store_true", help="write even over data that no demo generator made")
    return p


def resolve_config(args: argparse.Namespace) -> RunConfig:
    """The chosen preset with command-line overrides applied (each checked, naming its flag). Epochs
    given with --epochs are trained as given: the preset's min_steps is off unless --min-steps is
    given too."""
    cfg = presets.get(presets.load_all(args.presets), args.preset)
    changes = {}
    for key in EDITABLE:
        text = getattr(args, key, None)
        if text is not None:
            changes[key] = flag_value(key, text)
    return cfg.with_training(**as_asked(changes))


@contextmanager
def _synthesis_bar():
    """A progress bar for speech synthesis; yields the callback that moves it (done, total)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("synthesizing utterances"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _demo_dir() -> Path:
    """The built-in demo set's folder (made on first use)."""
    from . import data

    with _synthesis_bar() as progress:
        return data.default_dir(say=console.print, progress=progress)


def load_data(path: Path | None):
    from . import data

    return data.load(path or _demo_dir())


def cmd_train(args: argparse.Namespace) -> int:
    from . import trainer

    cfg = resolve_config(args)
    dataset = load_data(args.data)
    console.print(f"{dataset.describe(cfg.training.val_ratio)}")
    return _train(lambda listen: trainer.train(cfg, dataset, args.runs, listen, args.stop), dataset, args.predict)


def cmd_resume(args: argparse.Namespace) -> int:
    from . import data, runs, trainer

    run = runs.open_run(runs.find(args.run_dir, getattr(args, "runs", Path("runs"))))
    dataset = data.load(_data_of(run, args))
    console.print(f"resuming {run.path} ({run.state}, {run.status.epochs_done}/{run.config.training.epochs} epochs)")
    return _train(lambda listen: trainer.resume(run, dataset, listen, args.stop), dataset, args.predict)


def _data_of(run, args: argparse.Namespace) -> Path:
    """--data, or the data folder the run recorded."""
    if getattr(args, "data", None) is not None:
        return args.data
    recorded = run.record.get("data")
    if not isinstance(recorded, str) or not recorded:
        raise PhonetuiError(f"{run.path / 'config.toml'}: no data folder recorded; pass --data")
    return Path(recorded)


@contextmanager
def _printer():
    """A trainer listener printing the course's log lines, with a progress bar within each epoch."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from . import runs, tensorboard
    from .events import BestSaved, Cancelled, EpochEnd, Event, Outcome, RunStarted
    from .events import Progress as Step
    from .trainer import log_line

    bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[fps]:>9,.0f} frames/s"),
                   TimeRemainingColumn(), console=console, transient=True, disable=not console.is_terminal)
    task = bar.add_task("", total=1, fps=0.0)

    def listen(e: Event) -> None:
        match e:
            case RunStarted(run=run):
                console.print(f"run {run.path} · preset {run.config.preset} · device {e.device} · "
                              f"{e.n_train:,} train / {e.n_val:,} val rows")
                if note := run.epochs_note:
                    console.print(note)
            case Step():
                bar.update(task, description=f"epoch {e.epoch}/{e.epochs}" + (f" · {e.device}" if e.device else ""),
                           completed=e.frames, total=e.total, fps=e.frames_per_s)
            case EpochEnd(metrics=m):
                bar.update(task, completed=0)
                console.print(log_line(m, e.epochs) + f"  ({m.seconds:.1f} s"
                              + (", trained before the resume)" if e.earlier else ")"))
            case BestSaved(val_acc=acc) if acc is not None:
                console.print(f"saving model with acc {acc:.3f}")
            case Cancelled(run=run) if run.status.outcome == Outcome.PRUNED:
                console.print(f"{run.status.message}: {run.path}")
            case Cancelled(run=run):
                saved = (run.path / runs.CHECKPOINT).exists()
                console.print(f"stopped: the best model (epoch {run.status.best_epoch}) is kept in {run.path}" if saved
                              else f"stopped before an epoch ended: no model was saved yet ({run.path})")
                if run.status.epochs_done:
                    console.print(f"`phonetui resume {run.path}` continues it")

    with bar:
        yield tensorboard.tee(listen) if tensorboard.wanted() else listen


def _train(start, dataset, export: bool) -> int:
    """Run start(listen) -> Run with the printer, then report it (and export its CSV if asked)."""
    from . import runs
    from .events import Outcome
    from .predict import predict

    with _printer() as listen:
        run = start(listen)
    best, at = run.status.best_val_acc, run.status.best_epoch
    console.print(f"run folder: {run.path}" + (f" (best val acc {best:.4f} at epoch {at})" if best is not None else ""))
    if run.status.outcome == Outcome.EARLY_STOPPED:
        console.print(run.status.message)
    if export and (run.path / runs.CHECKPOINT).exists():
        _report(predict(run, dataset, device=run.config.training.device))
    return 130 if run.status.status == "stopped" else 0


@contextmanager
def _signals_stop():
    """Ctrl+C, SIGTERM and SIGHUP stop a command: each sets the yielded StopFlag, which a training checks
    between batches, and raises KeyboardInterrupt (a training ends `stopped`, temp files are removed,
    and whatever else runs is cut short). The flag stops a training even where the exception is lost
    (raised inside a finaliser, say). The old handlers and signal mask come back after."""
    from .events import Outcome, StopFlag

    stop = StopFlag()  # set, with the reason a stopped run records, by Ctrl+C, SIGTERM or SIGHUP
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handle(signum: int, frame) -> None:
        if signum != signal.SIGINT:
            stop.stop(f"stopped by {signal.Signals(signum).name}", Outcome.STOPPED_BY_SIGNAL)
        stop.set()
        raise KeyboardInterrupt(stop.reason)

    # Installed for Ctrl+C too, and unblocked, for a process started with them ignored or blocked (a
    # background job, a parent that masked them): both are inherited, and would leave a training deaf.
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.signal(s, handle) for s in signals}
    mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
    try:
        yield stop
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for s, handler in old.items():
            signal.signal(s, handler)


def cmd_sweep(args: argparse.Namespace) -> int:
    from . import space, sweep, trainer

    runs_dir = getattr(args, "runs", Path("runs"))
    if args.list:
        table = Table(Column("id", no_wrap=True), "preset", "grid", "trials", "left", box=None)
        listed = sweep.list_sweeps(runs_dir)
        for s in listed:
            if isinstance(s, sweep.Sweep):
                grid = " ".join(f"{k}={','.join(map(str, v))}" for k, v in s.grid.items())
                table.add_row(s.id, s.preset, grid, str(len(s.trials)), str(len(s.pending())))
        _print_table(table)
        for e in listed:
            if isinstance(e, PhonetuiError):
                console.print(str(e))
        return 0
    if args.drop:
        s = sweep.drop(runs_dir, args.drop)
        console.print(f"dropped sweep {s.id} ({len(s.pending())} of {len(s.trials)} runs were left; its runs stay)")
        return 0
    if args.jobs < 1:
        raise PhonetuiError(f"--jobs {args.jobs}: must be an integer >= 1")
    flags = [k for k in EDITABLE if getattr(args, k, None) is not None]
    if args.trial is not None:
        return _sweep_worker(args, runs_dir)
    if args.sweep_id:
        s = sweep.load(runs_dir, args.sweep_id)
        if s.base is None:  # saved before sweeps kept their config: the preset and flags, as then
            args.preset = s.preset
            s.base = resolve_config(args)
        elif flags:
            raise PhonetuiError(f"sweep --continue {s.id}: continues with the settings it started with; "
                                f"--{flags[0].replace('_', '-')} cannot change them")
    else:
        if getattr(args, "preset", None) is None:
            raise PhonetuiError("sweep: name a --preset (or --continue ID)")
        texts = {k: str(text) for k in EDITABLE if (text := getattr(args, k, None)) is not None
                 and space.intent(k, str(text)) != space.Shape.VALUE}  # lists (and ranges, which it refuses)
        if not texts:
            raise PhonetuiError("sweep: give at least one flag a comma-separated list, e.g. --lr 1e-3,3e-4")
        grid = sweep.parse_grid(texts)
        for key in texts:
            setattr(args, key, None)
        s = sweep.create(runs_dir, resolve_config(args), grid)
    if args.jobs > 1:
        return _sweep_jobs(args, s, runs_dir)
    with sweep.hold(s):
        left = s.pending()
        console.print(f"sweep {s.id}: preset {s.preset}, {len(s.trials)} trials, {len(left)} to run")
        dataset = load_data(getattr(args, "data", None))
        console.print(dataset.describe(s.base.training.val_ratio))
        for i, trial in enumerate(left, 1):
            cfg = s.config(trial)
            console.print(f"[bold]trial {i}/{len(left)}[/]: " + ", ".join(f"{k} {v}" for k, v in trial.values.items()))
            code = _train(lambda listen: trainer.train(cfg, dataset, runs_dir, sweep.track(s, trial, listen), args.stop),
                          dataset, args.predict)
            if code:
                console.print(f"sweep stopped; `phonetui sweep --continue {s.id}` runs what is left")
                return code
    _leaderboard(s)
    return 0


def _sweep_jobs(args: argparse.Namespace, s, runs_dir: Path) -> int:
    """`sweep --jobs N`: the pending trials in worker processes, N at once, then the leaderboard."""
    from . import sweep

    left = s.pending()
    at_once = min(args.jobs, max(len(left), 1))
    console.print(f"sweep {s.id}: preset {s.preset}, {len(s.trials)} trials, {len(left)} to run, {at_once} at a time")
    data_dir = getattr(args, "data", None) or _demo_dir()
    console.print(load_data(data_dir).describe(s.base.training.val_ratio))

    def announce(i: int, n: int, trial) -> None:
        console.print(f"[bold]trial {s.trials.index(trial) + 1}[/] ({i} of {n}) starts: "
                      + ", ".join(f"{k} {v}" for k, v in trial.values.items()))

    codes = sweep.run_jobs(s, at_once, data_dir, lambda n, line: print(f"[trial {n}] {line}", flush=True), args.stop,
                           announce, args.predict, getattr(args, "presets", None))
    failed = [s.trials.index(t) + 1 for t, c in zip(left, codes) if c not in (0, None, 130)]
    if args.stop.is_set() or failed or None in codes:
        console.print((f"trial {', '.join(map(str, failed))} failed; " if failed else "sweep stopped; ")
                      + f"`phonetui sweep --continue {s.id}` runs what is left")
        return 130 if args.stop.is_set() else 1
    _leaderboard(sweep.load(runs_dir, s.id))
    return 0


def _sweep_worker(args: argparse.Namespace, runs_dir: Path) -> int:
    """One trial of a `sweep --jobs N` (the parent holds the sweep's lock and prints the leaderboard)."""
    from . import sweep, trainer

    if not args.sweep_id:
        raise PhonetuiError("sweep --trial: only with --continue ID")
    s = sweep.load(runs_dir, args.sweep_id)
    if not 1 <= args.trial <= len(s.trials):
        raise PhonetuiError(f"--trial {args.trial}: sweep {s.id} has trials 1 to {len(s.trials)}")
    trial = s.trials[args.trial - 1]
    dataset = load_data(getattr(args, "data", None))
    cfg = s.config(trial)
    return _train(lambda listen: trainer.train(cfg, dataset, runs_dir, sweep.track(s, trial, listen), args.stop),
                  dataset, args.predict)


def cmd_search(args: argparse.Namespace) -> int:
    from . import search, storage

    runs_dir = getattr(args, "runs", Path("runs"))
    notify = lambda line: print(f"phonetui: {line}", file=sys.stderr, flush=True)  # noqa: E731
    if args.list:
        name = args.study or getattr(args, "preset", None) or ""
        _study_board(search.open_study(runs_dir, name, args.storage, notify, create=False))
        return 0
    if getattr(args, "preset", None) is None:
        raise PhonetuiError("search: name a --preset")
    for flag, n in (("trials", args.trials), ("jobs", args.jobs)):
        if n < 1:
            raise PhonetuiError(f"--{flag} {n}: must be an integer >= 1")
    texts = {k: str(text) for k in EDITABLE if (text := getattr(args, k, None)) is not None}
    space, fixed = search.parse_space(texts)
    for key in texts:
        setattr(args, key, None)
    base = resolve_config(args).with_training(**fixed)
    study = search.open_study(runs_dir, args.study or search.study_name(base.preset, fixed), args.storage, notify)
    url = storage.url_for(runs_dir, args.storage)
    shares = search.shares(args.trials, args.jobs)
    if args.job is None:
        console.print(f"study {study.study_name} ({storage.shown(url)}): {args.trials} trials of {base.preset} over "
                      + ", ".join(f"{d.key} {d}" for d in space) + (f", {len(shares)} at a time" if len(shares) > 1 else ""))
    if len(shares) > 1 and args.job is None:
        data_dir = getattr(args, "data", None) or _demo_dir()
        problems = search.run_jobs(
            study, shares, lambda n, job: search.worker_command(base.preset, study.study_name, texts, n, job, data_dir,
                                                                runs_dir, getattr(args, "presets", None), args.predict),
            lambda job, line: print(f"[job {job}] {line}", flush=True), args.stop, env={storage.ENV: url})
        _study_board(search.open_study(runs_dir, study.study_name, args.storage, notify))
        if args.stop.is_set():
            return 130
        for line in problems:
            print(f"phonetui: {line}", file=sys.stderr, flush=True)
        return 1 if problems else 0
    dataset = load_data(getattr(args, "data", None))
    console.print(dataset.describe(base.training.val_ratio))

    def announce(number: int, i: int, n: int, values: dict) -> None:
        console.print(f"[bold]trial {number}[/] ({i} of {n}): " + ", ".join(
            f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items()))

    def export(run) -> None:
        if args.predict:
            from .predict import predict

            _report(predict(run, dataset, device=run.config.training.device))

    with _printer() as listen:
        finished = search.optimize(study, base, space, dataset, runs_dir, args.trials, listen, args.stop,
                                   announce=announce, finished=export)
    if args.job is None:
        _study_board(study)
    return 0 if finished else 130


def _study_board(study) -> None:
    """A study's leaderboard: every trial from every worker and machine, with where it ran."""
    from . import search

    board = search.leaderboard(study)
    keys, rows = search.board_rows(board)
    table = Table("rank", "trial", "state", *keys, "best val acc", "host", Column("run", no_wrap=True), box=None)
    for cells, run in rows:
        if run is not None and run.is_relative_to(Path.cwd()):
            run = run.relative_to(Path.cwd())
        table.add_row(*cells, str(run or "-"))
    console.print(f"study {study.study_name}: {len(board)} trials")
    _print_table(table)


def _leaderboard(s) -> None:
    from . import sweep

    table = Table("rank", "run", *s.grid, "best val acc", "test acc", "status", box=None)
    table.columns[1].no_wrap = True
    for rank, (trial, run) in enumerate(sweep.leaderboard(s), 1):
        best = run.status.best_val_acc if run else None
        test = run.test_acc if run else None
        table.add_row(str(rank), trial.run or "-", *(str(trial.values[k]) for k in s.grid),
                      "-" if best is None else f"{best:.4f}", "-" if test is None else f"{test:.4f}",
                      run.state if run else "not run")
    console.print(f"sweep {s.id}: leaderboard")
    _print_table(table)


def _report(p) -> None:
    acc = f", test acc {p.test_acc:.4f}" if p.test_acc is not None else ""
    console.print(f"wrote {p.path} ({p.rows:,} rows{acc})")


def cmd_predict(args: argparse.Namespace) -> int:
    import time

    from . import runs
    from .predict import predict, predict_ensemble

    flag_value("device", args.device)
    members = [runs.open_run(runs.find(d, getattr(args, "runs", Path("runs")))) for d in args.run_dir]
    data = load_data(_data_of(members[0], args))
    if len(members) == 1 and args.decode == "argmax":
        _report(predict(members[0], data, args.out, args.device))
        return 0
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or members[0].path.parent / f"{'ensemble' if len(members) > 1 else members[0].id}-{args.decode}-{stamp}.csv"
    if len(members) > 1:
        console.print(f"ensemble of {len(members)} runs: " + ", ".join(r.id for r in members))
    p = predict_ensemble(members, data, out, args.device, args.decode, args.weights, follow_link=args.out is not None)
    _report(p)
    record = p.record
    if args.weights == "val":
        console.print("weights chosen on the validation split: " + ", ".join(
            f"{m['run']} {m['weight']:.3f}" for m in record["members"]) + f" (val acc {record['val_acc_argmax']:.4f})")
    if args.decode == "viterbi":
        console.print(f"viterbi: scale {record['scale']:g}, duration term {record['loop']:g} tuned on the validation split: val acc "
                      f"{record['val_acc']:.4f} (argmax {record['val_acc_argmax']:.4f})")
    console.print(f"recorded in {out.with_suffix('.json')}")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    table = Table("name", "description", "params", box=None)
    for name, p in sorted(presets.load_all(getattr(args, "presets", None)).items()):
        table.add_row(name, p.description, f"{p.model.param_count():,}")
    console.print(table)
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from . import runs

    if args.show is not None:
        return _show(runs.open_run(runs.find(args.show, getattr(args, "runs", Path("runs")))))
    listed = runs.list_runs(getattr(args, "runs", Path("runs")))
    table = Table("id", "preset", "lr", "batch", "epochs", "best val acc", "test acc", "status", box=None)
    damaged = []
    for r in listed:
        if isinstance(r, runs.DamagedRun):
            table.add_row(r.id, "-", "-", "-", "-", "-", "-", r.state)
            damaged.append(f"{r.path}: damaged: {r.reason}")
            continue
        t, best, test = r.config.training, r.status.best_val_acc, r.test_acc
        table.add_row(r.id, r.config.preset, f"{t.lr:g}", str(t.batch_size), f"{r.status.epochs_done}/{t.epochs}",
                      "-" if best is None else f"{best:.4f}", "-" if test is None else f"{test:.4f}", r.state)
    _print_table(table)
    for line in damaged:
        console.print(line)
    return 0


def _show(run) -> int:
    """A run's best model, class by class: val accuracy per phone (worst first) and the confused pairs."""
    from . import diagnostics

    phones, pairs = diagnostics.read(run)
    if not phones:
        raise PhonetuiError(f"{run.path}: no per-phone diagnostics yet (they come with the first validated best model)")
    best = run.status.best_val_acc
    console.print(f"{run.id} · preset {run.config.preset} · best val acc "
                  f"{'-' if best is None else f'{best:.4f}'} at epoch {run.status.best_epoch}")
    table = Table("phone", "val frames", "accuracy", box=None)
    for p in sorted(phones, key=lambda p: (p.accuracy is None, p.accuracy or 0)):
        table.add_row(p.phone, f"{p.frames:,}", "-" if p.accuracy is None else f"{p.accuracy:.3f}")
    pairs_table = Table("true", "predicted as", "frames", "share of true", box=None)
    for c in pairs:
        pairs_table.add_row(c.true, c.predicted, f"{c.frames:,}", f"{c.share:.3f}")
    console.print(table, pairs_table)
    return 0


def cmd_demo_data(args: argparse.Namespace) -> int:
    from . import data

    if args.simulated:
        if args.utterances is not None or args.test_utterances is not None:
            raise PhonetuiError("demo-data: --utterances and --test-utterances are for speech; --simulated takes rows")
        rows = (args.train_rows or data.DEMO_TRAIN_ROWS, args.test_rows or data.DEMO_TEST_ROWS)
        out = data.make_demo(args.out, *rows, args.seed, args.force)
        console.print(f"wrote simulated demo data to {out} ({rows[0]:,} train + {rows[1]:,} test rows, seed {args.seed})")
        return 0
    if args.train_rows is not None or args.test_rows is not None:
        raise PhonetuiError("demo-data: --train-rows and --test-rows are for --simulated; speech takes --utterances")
    from .data import speech

    sizes = (args.utterances or data.DEMO_UTTERANCES, args.test_utterances or data.DEMO_TEST_UTTERANCES)
    with _synthesis_bar() as progress:
        summary = data.make_speech_demo(args.out, *sizes, args.seed, progress, args.force)
    console.print(f"wrote speech demo data to {args.out}: {speech.describe(summary)}, seed {args.seed}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """The app in a browser: each browser tab runs `phonetui` with these flags in a process of its own."""
    try:
        from .serve import GuardedServer, is_loopback
    except ImportError:
        raise PhonetuiError("serve needs textual-serve: pip install 'phonetui[serve]'") from None
    if args.max_apps < 1:
        raise PhonetuiError(f"--max-apps {args.max_apps}: must be an integer >= 1")
    if not 1 <= args.port <= 65535:
        raise PhonetuiError(f"--port {args.port}: must be from 1 to 65535")
    app_args = []
    for key in ("data", "runs", "preset", *EDITABLE, "trials", "jobs"):
        if (value := getattr(args, key, None)) is not None:
            app_args += [f"--{key.replace('_', '-')}", str(value)]
    for folder in getattr(args, "presets", None) or []:
        app_args += ["--presets", str(folder)]
    if getattr(args, "tensorboard", False):
        app_args.append("--tensorboard")
    command = shlex.join([sys.executable, "-m", "phonetui", *app_args])
    server = GuardedServer(command, args.host, args.port, None if args.no_token else GuardedServer.new_token(),
                           args.max_apps, say=lambda line: print(line, file=sys.stderr, flush=True))
    if not is_loopback(args.host):
        print(f"phonetui: warning: listening on {args.host}, beyond this machine: anyone who reaches port {args.port}"
              + (" can train and delete runs (--no-token)" if args.no_token else " and has the token can train and "
                 "delete runs"), file=sys.stderr, flush=True)
    elif args.no_token:
        print("phonetui: warning: --no-token: any program on this machine can drive the app", file=sys.stderr,
              flush=True)
    console.print(f"serving the app at {server.url()} (Ctrl+C stops)")
    try:
        server.serve()
    except OSError as e:
        raise PhonetuiError(f"serve --host {args.host} --port {args.port}: {e.strerror or e}") from None
    return 0


def cmd_tui(args: argparse.Namespace) -> int:
    from .tui.app import PhonetuiApp
    from .tui.settings import Settings

    PhonetuiApp(Settings.from_args(args)).run()
    return 0


COMMANDS = {"train": cmd_train, "sweep": cmd_sweep, "search": cmd_search, "resume": cmd_resume,
            "predict": cmd_predict, "presets": cmd_presets, "runs": cmd_runs, "demo-data": cmd_demo_data,
            "serve": cmd_serve}


def main(argv: list[str] | None = None) -> int:
    try:  # a Ctrl+C while the parser is built (its signals no longer held) is one line too
        args = parser().parse_args(argv)
        from .tensorboard import enabled

        with enabled(getattr(args, "tensorboard", False)):  # this process's runs and its --jobs workers'
            if args.command is None:
                return cmd_tui(args)
            with _signals_stop() as args.stop:
                return COMMANDS[args.command](args)
    except (PhonetuiError, OSError, MemoryError) as e:  # bad input, or a file or memory failure: one line
        print(f"phonetui: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("phonetui: interrupted", file=sys.stderr)
        return 130
