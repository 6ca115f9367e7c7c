"""The one error type the user sees, and how any other failure becomes one line."""


class PhonetuiError(Exception):
    """A problem with user input (files, presets, hyperparameters); printed as one line."""


def one_line(e: BaseException) -> str:
    """A readable single line for any exception: ours as is, OS errors with their file, others typed."""
    if isinstance(e, PhonetuiError):
        return str(e)
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":  # host RAM, torch device
        return "out of memory on the training device: lower batch_size or pick a smaller preset"
    if isinstance(e, OSError) and e.strerror:
        return f"{e.filename}: {e.strerror}" if e.filename else e.strerror
    return f"{type(e).__name__}: {e}".splitlines()[0]


def note(line: str) -> None:
    """A line for the user beside a command's output: `phonetui: LINE` on stderr (a warning, a damaged
    cache computed again, a connection lost and back)."""
    import sys

    print(f"phonetui: {line}", file=sys.stderr, flush=True)


def first_line(e: BaseException, limit: int | None = None) -> str:
    """The first line of an exception's message, up to `limit` characters (an empty one: its type),
    for errors whose message runs to a paragraph (torch, Optuna, SQLAlchemy)."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:limit]
