"""The `phonetui` command (and `python -m phonetui`).

Ctrl+C, SIGTERM and SIGHUP are held while Python loads phonetui and, for the commands that train
or predict, torch: a Ctrl+C in the first second then ends the process with one line and exit code
130, never a traceback from inside an import or an abort inside torch's C++ start-up. A signal held
back arrives as soon as loading is over. A process started with Ctrl+C ignored gets Python's
handler first: an ignored signal that arrives while held would be dropped, not held.
"""

import _signal  # the C module: `signal` builds enums first, and a Ctrl+C could land in that

if _signal.getsignal(_signal.SIGINT) == _signal.SIG_IGN:  # started with Ctrl+C ignored (a background job,
    _signal.signal(_signal.SIGINT, _signal.default_int_handler)  # a parent that ignored it): held, not dropped
HELD = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP)
_MASK = _signal.pthread_sigmask(_signal.SIG_BLOCK, HELD)  # at import: the console script imports us first

import sys  # noqa: E402

NEED_TORCH = ("train", "resume", "predict", "sweep", "search")
HELP = ("-h", "--help")  # `phonetui train --help` prints and exits: no torch to load for it


def _arrive() -> None:
    """A call: where Python runs the handler of a signal that was just unblocked."""


def _forget_handled_interrupt() -> None:
    """A Ctrl+C that landed inside an exec() (dataclasses build their methods with it while a module
    imports) leaves CPython 3.11's _Py_UnhandledKeyboardInterrupt set even though phonetui handled
    it, and Python then ends the process by SIGINT instead of with its exit code. Clear it where
    this Python has it."""
    try:
        import ctypes

        ctypes.c_int.in_dll(ctypes.pythonapi, "_Py_UnhandledKeyboardInterrupt").value = 0
    except (ImportError, ValueError, AttributeError):
        pass


def main() -> None:
    try:
        try:
            from . import cli

            if sys.argv[1:2] and sys.argv[1] in NEED_TORCH and not set(HELP) & set(sys.argv[2:]):
                import torch  # noqa: F401 - loaded while the signals are held
        finally:
            _signal.pthread_sigmask(_signal.SIG_SETMASK, _MASK)
        _arrive()
    except KeyboardInterrupt:
        print("phonetui: interrupted", file=sys.stderr)
        _forget_handled_interrupt()
        sys.exit(130)
    code = cli.main()
    if code == 130:
        _forget_handled_interrupt()
    sys.exit(code)


if __name__ == "__main__":
    main()
