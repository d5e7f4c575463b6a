"""The stop flag: SIGTERM, SIGUSR1 and SIGINT ask a run to save and leave at the next step boundary.

`gssm_jax.main` installs it before anything slow (JAX import, distributed start, compiles), so a
signal that arrives during start-up is kept for the loop instead of killing the process with its
default action. JAX is imported only when the processes must agree on stopping.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from gssm_jax.runtime.exitcodes import EXIT_INTERRUPTED

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


class StopFlag:
    """Set by a stop signal; a second SIGINT exits at once (EXIT_INTERRUPTED) with one line.

    The exit skips every cleanup, so an asynchronous save in flight leaves its temporary folder,
    which the next start removes; the last complete checkpoint resumes.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self.signum == signal.SIGINT:
            print(
                "second Ctrl-C: stopping now without saving (run again with the same --workdir to "
                "resume from the last checkpoint)",
                file=sys.stderr,
                flush=True,
            )
            os._exit(EXIT_INTERRUPTED)
        self.signum = signum
        print(f"received {signal.Signals(signum).name}: stopping after this step", flush=True)

    def install(self) -> None:
        for s in STOP_SIGNALS:
            self._previous[s] = signal.signal(s, self._handle)

    def reassert(self) -> None:
        """Installs the handlers again, once installed: jax.distributed.initialize's preemption
        notifier takes SIGTERM for itself (the run then never heard of it and trained on)."""
        if self._previous:
            for s in STOP_SIGNALS:
                signal.signal(s, self._handle)

    def restore(self) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)
        self._previous.clear()

    def agreed(self) -> bool:
        """True when any process was signalled (one small all-gather on multi-process runs)."""
        import jax
        import numpy as np
        from jax.experimental import multihost_utils

        local = np.int32(self.signum is not None)
        if jax.process_count() == 1:
            return bool(local)
        return bool(np.max(multihost_utils.process_allgather(local)))
