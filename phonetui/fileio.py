"""Files written atomically with the user's umask, and read only when they are regular files.

Every failure is a PhonetuiError of one line naming the file (full disk, no permission, a folder or
FIFO where a file should be), never a traceback or a half-written file.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Callable

from .errors import PhonetuiError


def _umask() -> int:
    """The process umask, read once: from /proc (race-free) or by setting it back at once."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file


def failed(path: Path, action: str, e: OSError) -> PhonetuiError:
    """The one line for an OSError on `path`, e.g. 'runs/x/best.pt: cannot write (No space left on device)'."""
    return PhonetuiError(f"{path}: cannot {action} ({e.strerror or type(e).__name__})")


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temp file beside `path`, give it the umask's mode, then rename it into place.

    On any failure the temp file is removed and `path` keeps its old content; an OSError becomes a
    PhonetuiError naming `path`."""
    tmp = None
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(name)
        write(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise failed(path, "write", e) from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def append_text(path: Path, text: str) -> None:
    """Add `text` at the end of `path` (made with the umask's mode if new; a symlink there is refused,
    not followed: the folder may be someone else's). For a log that grows a line at a time."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
    except OSError as e:
        raise failed(path, "write", e) from None


def check_regular(path: Path, what: str = "file") -> None:
    """Refuse a path that is missing, unreadable or not a regular file (a FIFO would block a read)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise PhonetuiError(f"{path}: missing {what}") from None
    except OSError as e:
        raise failed(path, "read", e) from None
    if not stat.S_ISREG(mode):
        raise PhonetuiError(f"{path}: not a regular file")


def read_bytes(path: Path, what: str = "file") -> bytes:
    """A regular file's bytes (see check_regular)."""
    check_regular(path, what)
    try:
        return path.read_bytes()
    except OSError as e:
        raise failed(path, "read", e) from None


def read_text(path: Path, what: str = "file") -> str:
    """A regular file's UTF-8 text; other bytes are refused naming the offset."""
    raw = read_bytes(path, what)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PhonetuiError(f"{path}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})") from None
