"""What Start runs: a run, a resume, a sweep or a search, each a job `(listen, cancel) -> ...` for
the session's one worker. `ui` is how a job speaks from its thread (UI below): say(text, kind,
toast), queue(text) for the Training tab's sweep/search line, log(text), reload()."""

from __future__ import annotations

from pathlib import Path

from .. import space
from ..config import RunConfig, n_epochs
from ..errors import PhonetuiError
from .form import FIELDS
from .messages import JobLog, JobQueued, JobSummary, Notice, RunsChanged


class UI:
    """How a job speaks from its worker thread: messages to the Training panel, in order with its
    trainer events (the same queue); those the panel does not take bubble up to the screen."""

    def __init__(self, panel, tensorboard: bool = False) -> None:
        self.panel = panel
        self.tensorboard = tensorboard  # the setting, for the worker processes' command lines

    def say(self, text: str, kind: str = "info", toast: bool = False) -> None:
        self.panel.post_message(Notice(text, kind, toast))

    def queue(self, text: str) -> None:
        self.panel.post_message(JobQueued(text))

    def log(self, text: str) -> None:
        self.panel.post_message(JobLog(text))

    def reload(self) -> None:
        self.panel.post_message(RunsChanged())

    def worker_line(self, label: str, line: str) -> None:
        """A --jobs worker's line, to the Log; History reads the runs folder again as it starts a run."""
        self.log(f"{label} {line}")
        if line.startswith("run "):
            self.reload()


def from_form(form, data, runs_dir: Path, presets_dirs: tuple[Path, ...], ui) -> tuple[object, str, str]:
    """(job, what it trains, the line announcing it) for the form's values: a run, a sweep (a field
    holds a list) or an Optuna search (a range; its lists become the search's choices)."""
    cfg, grid, ranges = form.config(), form.lists(), form.ranges()
    kind = form.job()
    if kind == space.Job.SEARCH:
        from .. import search as searches

        texts = {k: form.text(k) for k in grid} | ranges
        dims, _ = searches.parse_space(texts)
        trials, n = form.search()
        name = searches.study_name(cfg.preset, {k: getattr(cfg.training, k) for k in form.modified() if k not in texts})
        line = (f"Optuna search (study {name}): {trials} trials of {cfg.preset} over "
                + ", ".join(f"{FIELDS[d.key]} {d}" for d in dims) + (f", {n} at a time" if n > 1 else ""))
        every = {k: form.text(k) for k in FIELDS}  # the worker processes' flags, as typed
        return (search(name, cfg, dims, every, data, runs_dir, trials, n, presets_dirs, ui),
                f"Optuna search over {cfg.preset}", line)
    if kind == space.Job.SWEEP:
        from .. import sweep as sweeps

        queue = sweeps.create(runs_dir, cfg, grid)
        n = form.search()[1]
        line = (f"sweep {queue.id}: {len(queue.trials)} runs of {cfg.preset} over "
                + ", ".join(f"{FIELDS[k]} {'/'.join(map(str, v))}" for k, v in grid.items())
                + (f", {n} at a time" if n > 1 else ""))
        return sweep(queue, data, ui, n), f"sweep {queue.id}", line
    line = f"starting {cfg.preset}: lr {cfg.training.lr:g}, batch {cfg.training.batch_size}, {n_epochs(cfg.training.epochs)}"
    return run(cfg, data, runs_dir), cfg.preset, line


def continued(runs_dir: Path, sweep_id: str, presets: dict[str, RunConfig], values: dict):
    """A saved sweep's queue, to run what is left of it; one saved before sweeps kept their config
    gets its preset with the form's `values`."""
    from .. import sweep as sweeps

    queue = sweeps.load(runs_dir, sweep_id)
    if queue.base is None:
        base = presets.get(queue.preset)
        if base is None:
            raise PhonetuiError(f"sweep {sweep_id}: preset '{queue.preset}' not found")
        queue.base = base.with_training(**values)
    return queue


def _shown(values: dict) -> str:
    return ", ".join(f"{FIELDS.get(k, k)} {v:.3g}" if isinstance(v, float) else f"{FIELDS.get(k, k)} {v}"
                     for k, v in values.items())


def run(cfg: RunConfig, data, runs_dir: Path):
    def job(listen, cancel):
        from .. import trainer

        return trainer.train(cfg, data, runs_dir, listen, cancel)
    return job


def resume(path: Path, data):
    def job(listen, cancel):
        from .. import runs, trainer

        return trainer.resume(runs.open_run(path), data, listen, cancel)
    return job


def sweep(queue, data, ui, jobs: int = 1):
    """The sweep's pending trials one after another (each an ordinary run), or `jobs` at once, each
    in a worker process whose lines go to the Log."""
    def job(listen, cancel):
        from .. import sweep as sweeps

        def announce(i: int, n: int, trial) -> None:
            values = _shown(trial.values)
            ui.say(f"sweep {queue.id}: run {i}/{n} ({values})")
            total = len(queue.trials)
            ui.queue(f"sweep {queue.id}: run {total - n + i} of {total} ({values})"
                     + (f", {jobs} at a time (their lines: the Log tab)" if jobs > 1 else ""))

        if jobs > 1:
            codes = sweeps.run_jobs(queue, jobs, data.path, lambda n, line: ui.worker_line(f"[trial {n}]", line), cancel,
                                    announce, tensorboard=ui.tensorboard)
            if cancel.is_set():
                return
            failed = [c for c in codes if c]
            if failed:
                raise PhonetuiError(f"sweep {queue.id}: {len(failed)} worker process(es) failed, the first with exit "
                                    f"code {failed[0]} (their lines are in the Log); `phonetui sweep --continue "
                                    f"{queue.id}` runs what is left")
            ui.reload()
        elif not sweeps.run(queue, data, listen, cancel, announce):
            return
        ui.say(f"sweep {queue.id} finished: History ranks its runs (F7 sorts by best val acc)", "ok", True)
        ranked = [run for _, run in sweeps.leaderboard(sweeps.load(queue.runs_dir, queue.id)) if run is not None]  # as
        # saved: --jobs workers record their runs in the sweep's file, not in this process's copy
        return _summary(f"sweep {queue.id} finished: {len(queue.trials)} runs", ranked[0] if ranked else None)
    return job


def _summary(done: str, best) -> JobSummary:
    """A finished sweep's or search's line for the Training tab, naming its best run."""
    if best is None or best.status.best_val_acc is None:
        return JobSummary(f"{done}; none has a val acc", best)
    return JobSummary(f"{done}; the best is {best.id}, val acc {best.status.best_val_acc:.4f} at epoch "
                      f"{best.status.best_epoch} · F9 exports its test CSV", best)


def search(name: str, base: RunConfig, space, texts: dict[str, str], data, runs_dir: Path, trials: int, jobs: int,
           presets_dirs: tuple[Path, ...], ui):
    """An Optuna study (SQLite in the runs folder, or $PHONETUI_STORAGE): its trials one after
    another here, or `jobs` at once, each in a worker process whose lines go to the Log."""
    def job(listen, cancel):
        from .. import search as searches

        study = searches.open_study(runs_dir, name)
        if jobs > 1:
            finished = _in_processes(study, base, texts, data, runs_dir, trials, jobs, presets_dirs, ui, cancel)
        else:
            def announce(number: int, i: int, n: int, values: dict) -> None:
                done = sum(t.state.name == "COMPLETE" for t in study.trials)
                ui.say(f"Optuna trial {number} ({i} of {n}): {_shown(values)}")
                ui.queue(f"Optuna study {study.study_name}: trial {number} ({i} of {n}: {_shown(values)}) · "
                         f"{done} complete in the study so far")

            finished = searches.optimize(study, base, space, data, runs_dir, trials, listen, cancel, announce)
        if finished:
            best = study.best_trial
            ui.say(f"Optuna search finished: best val acc {best.value:.4f} (trial {best.number}, run "
                   f"{best.user_attrs.get('run')})", "ok", True)
            return _summary(f"Optuna search finished: {trials} trials (study {study.study_name})",
                            _opened(runs_dir, best.user_attrs.get("run")))
    return job


def _opened(runs_dir: Path, run_id):
    """The run `run_id` in the runs folder, or None (not recorded, or not readable)."""
    from .. import runs

    try:
        return runs.open_run(runs_dir / run_id) if isinstance(run_id, str) else None
    except PhonetuiError:
        return None


def _in_processes(study, base: RunConfig, texts: dict[str, str], data, runs_dir: Path, trials: int, jobs: int,
                  presets_dirs: tuple[Path, ...], ui, cancel) -> bool:
    """The search's trials in `jobs` worker processes (`phonetui search --jobs`); False when stopped."""
    from .. import search as searches
    from .. import storage

    shares = searches.shares(trials, jobs)
    ui.queue(f"Optuna study {study.study_name}: {trials} trials, {len(shares)} worker processes at once "
             "(their lines: the Log tab)")

    say = lambda job, line: ui.worker_line(f"[job {job}]", line)  # noqa: E731
    problems = searches.run_jobs(study, base.preset, texts, trials, jobs, data.path, runs_dir, say, cancel,
                                 list(presets_dirs), env={storage.ENV: storage.url_for(runs_dir, None)},
                                 tensorboard=ui.tensorboard)
    if cancel.is_set():
        return False
    if problems:
        raise PhonetuiError(f"Optuna search: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1
                                                               else "") + "; the workers' lines are in the Log")
    return True
