"""Where the steps since the last log line went: per-part seconds that add up to the step time."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

PARTS = ("data_wait", "compute", "log", "checkpoint", "profile")


class StepWindow:
    """Seconds per part (PARTS) and wall time over the steps since the last `reset()`.

    Eval runs between steps and is not part of any step: `exclude()` takes it out of the wall time.
    """

    def __init__(self) -> None:
        self.start = time.perf_counter()  # of the whole attempt, for elapsed time and ETA
        self.reset()

    def reset(self) -> None:
        self.seconds = dict.fromkeys(PARTS, 0.0)
        self.steps = 0
        self.t0 = time.perf_counter()

    @contextlib.contextmanager
    def timed(self, part: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[part] += time.perf_counter() - t

    @contextlib.contextmanager
    def excluded(self) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.t0 += time.perf_counter() - t

    def timings(self, tokens_per_step: int, devices: int) -> dict[str, float]:
        """Per-step means over the window; `<part>_s` add up to step_time_s."""
        n, wall = max(self.steps, 1), time.perf_counter() - self.t0
        out = {"step_time_s": wall / n}
        out.update({f"{part}_s": self.seconds[part] / n for part in PARTS})
        out["tokens_per_s"] = tokens_per_step * n / wall
        out["tokens_per_s_per_device"] = out["tokens_per_s"] / devices
        return out

    def elapsed(self) -> float:
        return time.perf_counter() - self.start
