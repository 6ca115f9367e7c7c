"""Command line: `phonetui` opens the TUI; subcommands drive the same core headless (what they print: phonetui.console)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__, console, presets
from .config import EDITABLE, RunConfig, as_asked, flag_value
from .errors import PhonetuiError, note, one_line
from .events import Outcome, signals_stop


def say(*lines, **kwargs) -> None:
    """A line on stdout (rich markup allowed), through phonetui.console's console."""
    console.console.print(*lines, **kwargs)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose help, where it takes --preset, ends by naming the presets: read when
    the help is printed, not each time a command starts (a broken preset file then spoils only the
    help's last line)."""

    lists_presets = False

    def format_help(self) -> str:
        if self.lists_presets:
            self.epilog = _presets_line()
        return super().format_help()


def _presets_line() -> str:
    """The presets --preset can name (built-in and ./presets; `phonetui presets` describes them)."""
    try:
        names = sorted(presets.load_all())
    except (PhonetuiError, OSError) as e:
        return f"presets: cannot list them ({one_line(e)})"
    return f"presets: {', '.join(names)} (and those in any --presets folder; `phonetui presets` describes them)"


def _add_run_options(p: argparse.ArgumentParser, sub: bool) -> None:
    """Options shared by the TUI and `train` (a subcommand's copy must not mask the top level's)."""
    default = argparse.SUPPRESS if sub else None
    p.lists_presets = True
    p.add_argument("--data", type=Path, default=default, help="folder with train_11.npy, train_label_11.npy, test_11.npy")
    p.add_argument("--runs", type=Path, default=argparse.SUPPRESS if sub else Path("runs"), help="runs folder (./runs)")
    p.add_argument("--presets", type=Path, action="append", default=default, help="extra presets folder (repeatable)")
    p.add_argument("--preset", default=argparse.SUPPRESS if sub else "baseline", help="preset name (baseline)")
    for key in EDITABLE:
        p.add_argument("--" + key.replace("_", "-"), dest=key, default=default, metavar="V",
                       help=f"override training.{key}")
    _add_tensorboard(p, sub)


def _add_tensorboard(p: argparse.ArgumentParser, sub: bool) -> None:
    from .tensorboard import default

    p.add_argument("--tensorboard", action="store_true", default=argparse.SUPPRESS if sub else default(),
                   help="also write each run's TensorBoard event files into its folder ($PHONETUI_TENSORBOARD=1)")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="phonetui", description="Frame-level phoneme classification experiment runner. "
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
    rr.add_argument("--epochs", dest="total_epochs", type=int, metavar="N", help="train on to N epochs in all "
                    "(more than it has trained; a finished run too): written to its config.toml; a cosine "
                    "schedule then spans N, its rate rising again from where it was")
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
    rp = sub.add_parser("report", help="the homework report's figures (PNG and SVG: curves, runs overlaid, "
                        "confusion matrix) and a Markdown file with a table of the runs")
    rp.add_argument("run_dir", type=Path, nargs="+", metavar="RUN", help="run folders, or their ids in the runs folder")
    rp.add_argument("--runs", type=Path, default=argparse.SUPPRESS, help="the runs folder of a bare id (./runs)")
    rp.add_argument("--out", type=Path, help="the report's folder (reports/<date>-<time>/; one that holds a report "
                    "already is refused)")
    im = sub.add_parser("import", help="a notebook's log (the course code's epoch lines) as a run in History: "
                        "imported, no model")
    im.add_argument("logfile", metavar="LOGFILE", help="the log, or - for standard input")
    im.add_argument("--name", help="names the run folder (the log's file name)")
    im.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="a setting the run had, over the course sample code's (baseline): lr=1e-3, "
                    "batch_size=16, hidden=2048,512, activation=relu, ... (repeatable)")
    im.add_argument("--runs", type=Path, default=argparse.SUPPRESS, help="runs folder (./runs)")
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
    from .space import one_value

    cfg = presets.get(presets.load_all(args.presets), args.preset)
    changes = {k: one_value(k, str(text), args.preset) for k in EDITABLE if (text := getattr(args, k, None)) is not None}
    return cfg.with_training(**as_asked(changes))


def _demo_dir() -> Path:
    """The built-in demo set's folder (made on first use)."""
    from . import data

    with console.synthesis_bar() as progress:
        return data.default_dir(say=say, progress=progress)


def load_data(path: Path | None):
    from . import data

    return data.load(path or _demo_dir())


def cmd_train(args: argparse.Namespace) -> int:
    from . import trainer

    cfg = resolve_config(args)
    dataset = load_data(args.data)
    say(f"{dataset.describe(cfg.training.val_ratio)}")
    return _train(lambda listen: trainer.train(cfg, dataset, args.runs, listen, args.stop), dataset, args)


def cmd_resume(args: argparse.Namespace) -> int:
    from . import data, runs, trainer

    run = runs.open_run(runs.find(args.run_dir, getattr(args, "runs", Path("runs"))))
    run.refuse_if_imported("resume")  # before its data, which it never recorded
    dataset = data.load(_data_of(run, args))
    to = f", on to {args.total_epochs}" if args.total_epochs is not None else ""
    say(f"resuming {run.path} ({run.state}, {run.status.epochs_done}/{run.config.training.epochs} epochs{to})")
    return _train(lambda listen: trainer.resume(run, dataset, listen, args.stop, epochs=args.total_epochs), dataset,
                  args)


def _data_of(run, args: argparse.Namespace) -> Path:
    """--data, or the data folder the run recorded."""
    if getattr(args, "data", None) is not None:
        return args.data
    recorded = run.info.data
    if not recorded:
        raise PhonetuiError(f"{run.path / 'config.toml'}: no data folder recorded; pass --data")
    return Path(recorded)


def _train(start, dataset, args: argparse.Namespace) -> int:
    """Run start(listen) -> Run with the printer (and TensorBoard's files where asked), then report it
    (and export its CSV with --predict)."""
    with console.printer(args.tensorboard) as listen:
        run = start(listen)
    return _ended(run, dataset, args.predict)


def _ended(run, dataset, export: bool) -> int:
    """Say where a run is and how it ended (and export its CSV if asked); its exit code."""
    from . import runs
    from .diagnosis import of_run
    from .predict import predict

    best, at = run.status.best_val_acc, run.status.best_epoch
    say(f"run folder: {run.path}" + (f" (best val acc {best:.4f} at epoch {at})" if best is not None else ""))
    if run.status.outcome == Outcome.EARLY_STOPPED:
        say(run.status.message)
    console.findings(of_run(run))
    if export and (run.path / runs.CHECKPOINT).exists():
        console.report(predict(run, dataset, device=run.config.training.device))
    return 130 if run.status.status == "stopped" else 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from . import space, sweep

    runs_dir = getattr(args, "runs", Path("runs"))
    if args.list:
        console.sweeps(sweep.list_sweeps(runs_dir))
        return 0
    if args.drop:
        s = sweep.drop(runs_dir, args.drop)
        say(f"dropped sweep {s.id} ({len(s.pending())} of {len(s.trials)} runs were left; its runs stay)")
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
    say(f"sweep {s.id}: preset {s.preset}, {len(s.trials)} trials, {len(s.pending())} to run")
    dataset = load_data(getattr(args, "data", None))
    say(dataset.describe(s.base.training.val_ratio))
    announce = lambda i, n, trial: say(f"[bold]trial {i}/{n}[/]: " + ", ".join(  # noqa: E731
        f"{k} {v}" for k, v in trial.values.items()))
    with console.printer(args.tensorboard) as listen:
        done = sweep.run(s, dataset, listen, args.stop, announce, lambda run: _ended(run, dataset, args.predict))
    if not done:
        say(f"sweep stopped; `phonetui sweep --continue {s.id}` runs what is left")
        return 130
    console.leaderboard(s)
    return 0


def _sweep_jobs(args: argparse.Namespace, s, runs_dir: Path) -> int:
    """`sweep --jobs N`: the pending trials in worker processes, N at once, then the leaderboard."""
    from . import sweep

    left = s.pending()
    at_once = min(args.jobs, max(len(left), 1))
    say(f"sweep {s.id}: preset {s.preset}, {len(s.trials)} trials, {len(left)} to run, {at_once} at a time")
    data_dir = getattr(args, "data", None) or _demo_dir()
    say(load_data(data_dir).describe(s.base.training.val_ratio))

    def announce(i: int, n: int, trial) -> None:
        say(f"[bold]trial {s.trials.index(trial) + 1}[/] ({i} of {n}) starts: "
                      + ", ".join(f"{k} {v}" for k, v in trial.values.items()))

    codes = sweep.run_jobs(s, at_once, data_dir, lambda n, line: print(f"[trial {n}] {line}", flush=True), args.stop,
                           announce, args.predict, getattr(args, "presets", None), args.tensorboard)
    failed = [s.trials.index(t) + 1 for t, c in zip(left, codes) if c not in (0, None, 130)]
    if args.stop.is_set() or failed or None in codes:
        say((f"trial {', '.join(map(str, failed))} failed; " if failed else "sweep stopped; ")
                      + f"`phonetui sweep --continue {s.id}` runs what is left")
        return 130 if args.stop.is_set() else 1
    console.leaderboard(sweep.load(runs_dir, s.id))
    return 0


def _sweep_worker(args: argparse.Namespace, runs_dir: Path) -> int:
    """One trial of a `sweep --jobs N` (the parent holds the sweep's lock and prints the leaderboard)."""
    from . import sweep

    if not args.sweep_id:
        raise PhonetuiError("sweep --trial: only with --continue ID")
    s = sweep.load(runs_dir, args.sweep_id)
    if not 1 <= args.trial <= len(s.trials):
        raise PhonetuiError(f"--trial {args.trial}: sweep {s.id} has trials 1 to {len(s.trials)}")
    dataset = load_data(getattr(args, "data", None))
    return _train(lambda listen: sweep.run_trial(s, s.trials[args.trial - 1], dataset, listen, args.stop), dataset,
                  args)


def cmd_search(args: argparse.Namespace) -> int:
    from . import search, storage

    runs_dir = getattr(args, "runs", Path("runs"))
    notify = note
    if args.list:
        name = args.study or getattr(args, "preset", None) or ""
        console.study_board(search.open_study(runs_dir, name, args.storage, notify, create=False))
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
        say(f"study {study.study_name} ({storage.shown(url)}): {args.trials} trials of {base.preset} over "
                      + ", ".join(f"{d.key} {d}" for d in space) + (f", {len(shares)} at a time" if len(shares) > 1 else ""))
    if len(shares) > 1 and args.job is None:
        data_dir = getattr(args, "data", None) or _demo_dir()
        problems = search.run_jobs(study, base.preset, texts, args.trials, args.jobs, data_dir, runs_dir,
                                   lambda job, line: print(f"[job {job}] {line}", flush=True), args.stop,
                                   getattr(args, "presets", None), args.predict, {storage.ENV: url}, args.tensorboard)
        console.study_board(search.open_study(runs_dir, study.study_name, args.storage, notify))
        if args.stop.is_set():
            return 130
        for line in problems:
            note(line)
        return 1 if problems else 0
    dataset = load_data(getattr(args, "data", None))
    say(dataset.describe(base.training.val_ratio))

    def announce(number: int, i: int, n: int, values: dict) -> None:
        say(f"[bold]trial {number}[/] ({i} of {n}): " + ", ".join(
            f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items()))

    def export(run) -> None:
        if args.predict:
            from .predict import predict

            console.report(predict(run, dataset, device=run.config.training.device))

    with console.printer(args.tensorboard) as listen:
        finished = search.optimize(study, base, space, dataset, runs_dir, args.trials, listen, args.stop,
                                   announce=announce, finished=export)
    if args.job is None:
        console.study_board(study)
    return 0 if finished else 130


def cmd_predict(args: argparse.Namespace) -> int:
    import time

    from . import runs
    from .predict import predict, predict_ensemble

    flag_value("device", args.device)
    members = [runs.open_run(runs.find(d, getattr(args, "runs", Path("runs")))) for d in args.run_dir]
    for run in members:  # before the data, which an imported run never recorded
        run.refuse_if_imported("predict")
    data = load_data(_data_of(members[0], args))
    if len(members) == 1 and args.decode == "argmax":
        console.report(predict(members[0], data, args.out, args.device))
        return 0
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or members[0].path.parent / f"{'ensemble' if len(members) > 1 else members[0].id}-{args.decode}-{stamp}.csv"
    if len(members) > 1:
        say(f"ensemble of {len(members)} runs: " + ", ".join(r.id for r in members))
    p = predict_ensemble(members, data, out, args.device, args.decode, args.weights, follow_link=args.out is not None)
    console.report(p)
    record = p.record
    if args.weights == "val":
        say("weights chosen on the validation split: " + ", ".join(
            f"{m['run']} {m['weight']:.3f}" for m in record["members"]) + f" (val acc {record['val_acc_argmax']:.4f})")
    if args.decode == "viterbi":
        say(f"viterbi: scale {record['scale']:g}, duration term {record['loop']:g} tuned on the validation split: val acc "
                      f"{record['val_acc']:.4f} (argmax {record['val_acc_argmax']:.4f})")
    say(f"recorded in {out.with_suffix('.json')}")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    console.presets(presets.load_all(getattr(args, "presets", None)))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from . import runs

    if args.show is not None:
        return console.show(runs.open_run(runs.find(args.show, getattr(args, "runs", Path("runs")))))
    console.runs(runs.list_runs(getattr(args, "runs", Path("runs"))))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from . import report, runs

    written = report.write([runs.open_run(runs.find(d, getattr(args, "runs", Path("runs")))) for d in args.run_dir],
                           args.out)
    console.report_written(written)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from . import importing

    run = importing.import_log(args.logfile, getattr(args, "runs", Path("runs")), args.name, args.sets)
    best, at = run.status.best_val_acc, run.status.best_epoch
    say(f"{run.status.message}: {run.path}" + (f" (best val acc {best:.4f} at epoch {at})" if best is not None else ""),
        markup=False)
    return 0


def cmd_demo_data(args: argparse.Namespace) -> int:
    from . import data

    if args.simulated:
        if args.utterances is not None or args.test_utterances is not None:
            raise PhonetuiError("demo-data: --utterances and --test-utterances are for speech; --simulated takes rows")
        rows = (args.train_rows or data.DEMO_TRAIN_ROWS, args.test_rows or data.DEMO_TEST_ROWS)
        out = data.make_demo(args.out, *rows, args.seed, args.force)
        say(f"wrote simulated demo data to {out} ({rows[0]:,} train + {rows[1]:,} test rows, seed {args.seed})")
        return 0
    if args.train_rows is not None or args.test_rows is not None:
        raise PhonetuiError("demo-data: --train-rows and --test-rows are for --simulated; speech takes --utterances")
    from .data import speech

    sizes = (args.utterances or data.DEMO_UTTERANCES, args.test_utterances or data.DEMO_TEST_UTTERANCES)
    with console.synthesis_bar() as progress:
        summary = data.make_speech_demo(args.out, *sizes, args.seed, progress, args.force)
    say(f"wrote speech demo data to {args.out}: {speech.describe(summary)}, seed {args.seed}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """The app in a browser: each browser tab runs `phonetui` with these flags in a process of its own."""
    try:
        from . import serve
    except ImportError:
        raise PhonetuiError("serve needs textual-serve: pip install 'phonetui[serve]'") from None
    flags = {k: v for k in ("data", "runs", "preset", *EDITABLE, "trials", "jobs") if (v := getattr(args, k, None)) is not None}
    command = serve.app_command(flags, getattr(args, "presets", None) or [], args.tensorboard)
    return serve.run(command, args.host, args.port, not args.no_token, args.max_apps, say)


def cmd_tui(args: argparse.Namespace) -> int:
    from .tui.app import PhonetuiApp
    from .tui.settings import Settings

    app = PhonetuiApp(Settings.from_args(args))
    app.run()
    if app.stopped_run is not None:  # on the terminal once the app's screen is gone
        say(left_line(app.stopped_run), markup=False)
    return 0


def left_line(run) -> str:
    """What quitting the app left: which run it stopped, and whether and how it can go on."""
    if not run.status.epochs_done:
        return f"stopped run {run.path} before its first epoch ended: nothing to resume"
    return f"stopped run {run.path} after epoch {run.status.epochs_done}: `phonetui resume {run.path}` continues it"


COMMANDS = {"train": cmd_train, "sweep": cmd_sweep, "search": cmd_search, "resume": cmd_resume,
            "predict": cmd_predict, "presets": cmd_presets, "runs": cmd_runs, "report": cmd_report, "import": cmd_import,
            "demo-data": cmd_demo_data, "serve": cmd_serve}


def main(argv: list[str] | None = None) -> int:
    try:  # a Ctrl+C while the parser is built (its signals no longer held) is one line too
        args = parser().parse_args(argv)
        if args.command is None:
            return cmd_tui(args)
        with signals_stop() as args.stop:
            return COMMANDS[args.command](args)
    except (PhonetuiError, OSError, MemoryError) as e:  # bad input, or a file or memory failure: one line
        print(f"phonetui: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("phonetui: interrupted", file=sys.stderr)
        return 130
