"""Ctrl-C in a run-reading command (evaluate, generate, probe): one line on stderr and exit 130.

Python turns SIGINT into a KeyboardInterrupt wherever the main thread happens to be: inside an
import (a traceback of dozens of lines), inside a garbage-collection callback of JAX (where it is
printed as "Exception ignored" and lost, so the command goes on), or not at all until a long XLA
call returns. `run_main` installs a handler before the command imports JAX: the first Ctrl-C raises
KeyboardInterrupt (so `finally` blocks run and the command reports it as one line), and if the
process has not exited `GRACE_S` seconds later (the interrupt was swallowed, or the main thread is
inside a long XLA call) a watcher thread prints the same line and ends the process with exit 130;
a second Ctrl-C ends it at once. Files are written to a temporary name and renamed, so whatever
was written is complete. Imports only the standard library: it must load before anything slow.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable

EXIT_INTERRUPTED = 130  # = gssm_jax.runtime.exitcodes.EXIT_INTERRUPTED (not imported: it is slow)
GRACE_S = 3.0
MESSAGE = "interrupted (Ctrl-C): stopped; files written so far are complete"

_lock = threading.Lock()
_state = {"interrupted": False, "said": False}


def say_interrupted() -> int:
    """Prints the one line (once per process); returns EXIT_INTERRUPTED."""
    with _lock:
        if not _state["said"]:
            _state["said"] = True
            print(MESSAGE, file=sys.stderr, flush=True)
    return EXIT_INTERRUPTED


def _hard_exit() -> None:
    say_interrupted()
    os._exit(EXIT_INTERRUPTED)


def _arm() -> None:
    """Marks the process interrupted and starts the grace timer (once)."""
    with _lock:
        if _state["interrupted"]:
            return
        _state["interrupted"] = True
    timer = threading.Timer(GRACE_S, _hard_exit)
    timer.daemon = True
    timer.start()


def _handler(signum, frame) -> None:
    _arm()
    raise KeyboardInterrupt


def _watch(fd: int) -> None:
    """Counts SIGINTs as they arrive, even while the main thread is inside C code: the first arms
    the grace timer, the second ends the process."""
    seen = 0
    while True:
        try:
            data = os.read(fd, 64)
        except OSError:
            return
        if not data:
            return
        for _ in range(data.count(signal.SIGINT)):
            seen += 1
            if seen == 1:
                _arm()
            else:
                _hard_exit()


def _unraisable(info) -> None:
    """A KeyboardInterrupt raised inside a callback Python cannot raise from (JAX's garbage
    collection hook) is lost to the main thread: stop here instead of printing it."""
    if isinstance(info.exc_value, KeyboardInterrupt):
        _hard_exit()
    sys.__unraisablehook__(info)


def install() -> None:
    """The handler, its watcher thread and the hook for lost interrupts (main thread only)."""
    signal.signal(signal.SIGINT, _handler)
    sys.unraisablehook = _unraisable
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    threading.Thread(target=_watch, args=(read_fd,), daemon=True, name="ctrl-c").start()


def interrupted() -> bool:
    """Whether a Ctrl-C arrived (also one whose KeyboardInterrupt was swallowed)."""
    return _state["interrupted"]


def run_main(main: Callable[[], int]) -> int:
    """`main()` with Ctrl-C as one line and exit 130, from before the command's slow imports."""
    install()
    try:
        code = main()
    except KeyboardInterrupt:
        return say_interrupted()
    return say_interrupted() if interrupted() else code
