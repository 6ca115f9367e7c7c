"""Where an Optuna study lives: SQLite in the runs folder, or a database server (PostgreSQL) that
every worker process and machine of a study shares.

Opening survives workers that create Optuna's tables at the same moment (the loser retries). Once
open, a lost connection (a restarted server, a network blip, a locked SQLite file) is retried for
RETRY_S seconds, with a line when it is lost and one when it is back, before the worker gives up
with one line. Every message shows the URL with its password masked.
"""

from __future__ import annotations

import functools
import os
import random
import re
import threading
import time
import warnings
from pathlib import Path
from typing import Callable

from .errors import PhonetuiError, first_line

DB = "optuna.db"
ENV = "PHONETUI_STORAGE"  # the storage URL, kept off command lines (and out of `ps`)
HEARTBEAT_S, GRACE_S = 20, 60  # a live trial's heartbeat; a trial silent for GRACE_S is stale
RETRY_S = float(os.environ.get("PHONETUI_RETRY_S", 120))  # how long a worker waits for a lost database (in all)
OPEN_TRIES = 8  # openings that lost the table-creation race to another worker
# RDBStorage's private methods that Optuna's cache layer calls, each a whole transaction of its own
CACHED_CALLS = ("_create_new_trial", "_set_trial_param", "_get_best_trial_id", "_get_trials", "_get_stale_trial_ids")


MISSING = "an Optuna search needs the search extra: pip install 'phonetui[search]'"


def missing() -> str | None:
    """None where Optuna can be imported, else the line that says how to install it (no import: the
    form asks on every keystroke)."""
    import importlib.util

    try:
        return None if importlib.util.find_spec("optuna") is not None else MISSING
    except (ValueError, ImportError):  # a stand-in module without a spec
        return MISSING


def import_optuna():
    """Optuna, or a PhonetuiError saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise PhonetuiError(MISSING) from None
    return optuna


def url_for(runs_dir: Path, storage: str | None) -> str:
    """The storage URL: the one given, else $PHONETUI_STORAGE, else SQLite in the runs folder."""
    return storage or os.environ.get(ENV) or f"sqlite:///{(runs_dir / DB).resolve()}"


def shown(url: str) -> str:
    """A storage URL fit to print: its password masked."""
    return re.sub(r"(://[^/:@]*:)[^/@]*@", r"\1***@", url)


def where(url: str) -> str:
    """The server (host:port) or file a URL points at, for messages."""
    try:
        from sqlalchemy.engine import make_url

        u = make_url(url)
    except Exception:  # noqa: BLE001 - not a URL at all: show it (masked) as given
        return shown(url)
    if u.get_backend_name() == "sqlite":
        return u.database or "memory"
    return f"{u.host or 'localhost'}" + (f":{u.port}" if u.port else "")


def _chain(e: BaseException):
    while e is not None:
        yield e
        e = e.__cause__ or e.__context__


# OperationalErrors that no wait will mend: a read-only file or folder, a full disk, a file that cannot be opened
_PERMANENT = re.compile(r"readonly database|read-only|disk is full|No space left|unable to open database file|"
                        r"Permission denied", re.IGNORECASE)


def transient(e: BaseException) -> bool:
    """A failure of the connection rather than of the request: worth retrying (a read-only or full
    disk under SQLite is not: it is said at once)."""
    from sqlalchemy import exc

    if any(_PERMANENT.search(str(c)) for c in _chain(e)):
        return False
    lost = (exc.OperationalError, exc.InterfaceError, exc.DisconnectionError, exc.PendingRollbackError)
    return any(isinstance(c, lost) or getattr(c, "connection_invalidated", False) for c in _chain(e))


def _lost_race(e: BaseException) -> bool:
    """Another worker created the same table, type or row first (PostgreSQL's catalogue says so)."""
    from sqlalchemy import exc

    return any(isinstance(c, (exc.IntegrityError, exc.ProgrammingError, exc.OperationalError)) and
               re.search(r"already exists|duplicate key|UniqueViolation|UNIQUE constraint failed", str(c))
               for c in _chain(e))  # the last: SQLite's, for alembic's version row


def reason(e: BaseException) -> str:
    """An exception from the driver in a few words: what the server said, without SQLAlchemy's dressing."""
    from sqlalchemy import exc

    for c in _chain(e):
        if isinstance(c, ImportError) and c.name:
            return f"no database driver ({c.name} is not installed; for PostgreSQL: pip install 'phonetui[postgres]')"
    e = next((c for c in _chain(e) if isinstance(c, exc.SQLAlchemyError)), e)  # not Optuna's wrapper around it
    text = re.sub(r"^\([\w.]+\) ", "", first_line(e, 300))
    text = re.sub(r"^connection failed: connection to server at .*? failed: ", "", text)
    return re.sub(r"^FATAL:\s+", "", text)


def describe(url: str, e: BaseException) -> str:
    """One line for a storage that cannot be opened, naming the server."""
    said = reason(e).replace(url, shown(url))
    if transient(e):
        return f"optuna storage {shown(url)}: cannot connect to {where(url)}: {said}"
    return f"optuna storage {shown(url)}: {said}"


@functools.cache
def _retrying_storage() -> type:
    """RDBStorage whose every public call is retried while the connection is lost (built on first
    use: Optuna is an optional extra)."""
    import optuna

    class Retrying(optuna.storages.RDBStorage):
        notify: Callable[[str], None] = staticmethod(lambda line: None)
        _down: float | None = None  # when the connection was first seen lost (by any thread), while it is
        lost: str | None = None  # the line once it has been lost for longer than RETRY_S: every call then fails at once
        _lock = threading.Lock()

        def _call(self, method: Callable, *args, **kwargs):
            started = None
            while True:
                if self.lost:
                    raise PhonetuiError(self.lost)
                try:
                    out = method(self, *args, **kwargs)
                except Exception as e:  # noqa: BLE001 - sorted below: only a lost connection is retried
                    if not transient(e):
                        raise
                    now = time.monotonic()
                    started = started or self._down or now  # one clock for every call: RETRY_S in all, not per call
                    if now - started > RETRY_S:
                        self.lost = (f"optuna storage {shown(self.url)}: lost the database at {where(self.url)} "
                                     f"for over {RETRY_S:g} s ({reason(e)})")
                        raise PhonetuiError(self.lost) from None
                    self._said(f"optuna storage {where(self.url)}: lost the connection ({reason(e)}); "
                               f"retrying for up to {RETRY_S:g} s", True)
                    try:
                        self.scoped_session.remove()  # this thread's session saw the loss: a new one for the retry
                    except Exception:  # noqa: BLE001 - a session past rolling back is dropped all the same
                        pass
                    time.sleep(0.5 + random.random())
                    continue
                if started is not None:
                    self._said(f"optuna storage {where(self.url)}: connected again", False)
                return out

        def _said(self, line: str, down: bool) -> None:
            """Say a change of state once, however many threads (the heartbeat's too) notice it."""
            with self._lock:
                if (self._down is None) == down:
                    self._down = time.monotonic() if down else None
                    self.notify(line)

    skip = {"remove_session", "upgrade", "get_current_version", "get_head_version", "get_all_versions"}
    for name, method in vars(optuna.storages.RDBStorage).items():
        if callable(method) and (not name.startswith("_") or name in CACHED_CALLS) and name not in skip:
            setattr(Retrying, name, _retried(method))
    beat = Retrying.record_heartbeat

    def record_heartbeat(self, trial_id: int) -> None:
        """Optuna's heartbeat thread: a lost database is the trial's to report (in one line, from the
        main thread), never a traceback from this thread."""
        try:
            beat(self, trial_id)
        except Exception:  # noqa: BLE001 - the main thread's next call says what was lost
            pass

    Retrying.record_heartbeat = record_heartbeat
    return Retrying


def _retried(method: Callable) -> Callable:
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        return self._call(method, *args, **kwargs)
    return call


def connect(url: str, notify: Callable[[str], None] = lambda line: None):
    """An open storage at `url`, retrying the table-creation race; any other failure is one
    PhonetuiError line naming the server."""
    optuna = import_optuna()
    _refuse_memory(url)
    sqlite = url.startswith("sqlite")
    engine = {"connect_args": {"timeout": 60}} if sqlite else {"pool_pre_ping": True,
                                                                "connect_args": {"connect_timeout": 10}}
    for attempt in range(OPEN_TRIES):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna since 2.9, and work
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = _retrying_storage()(url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_S,
                                              grace_period=GRACE_S)
            storage.notify = notify
            return storage
        except Exception as e:  # noqa: BLE001 - a bad URL, a missing driver, an unreachable server
            if not (_lost_race(e) and attempt < OPEN_TRIES - 1):
                raise PhonetuiError(describe(url, e)) from None
            time.sleep(0.1 + random.random() * 0.4 * (attempt + 1))


def _refuse_memory(url: str) -> None:
    """An in-memory SQLite database lives in one connection: the heartbeat thread's own connection sees
    none of its tables, and the study vanishes with the process. Refused in one line."""
    try:
        from sqlalchemy.engine import make_url

        u = make_url(url)
    except Exception:  # noqa: BLE001 - connect() says what is wrong with the URL
        return
    if u.get_backend_name() == "sqlite" and (u.database in (None, "", ":memory:") or "memory" in str(u.query)):
        raise PhonetuiError(f"optuna storage {shown(url)}: an in-memory database would vanish with this process "
                            "(and its heartbeat thread cannot see it): name a file, sqlite:///PATH/optuna.db, "
                            "or a server")
