"""Split the host CPU into several XLA devices, so that data parallelism spreads a step over cores.

XLA:CPU runs one device per process by default and parallelises inside each op over the cores.
The ops of these models are small (emb_dim 64: matmuls of a few hundred MFLOP, attention of head
size 16), and that intra-op split keeps 2 cores busy only part of the time. With one XLA device
per core (`--xla_force_host_platform_device_count`) the mesh's `data` axis gives each core its own
share of the batch, and the cores meet once a step, in the gradient all-reduce
(`python -m gssm_jax.bench train` measures both layouts; docs/results/parity.md).

`runtime.cpu_devices`: 0 leaves XLA's default (one CPU device); N >= 1 asks for N; -1 asks for
one per core the process may run on, reduced to the largest count that divides the global batch.
The flag must be in XLA_FLAGS before JAX creates its CPU client, so this module imports nothing
heavy; where XLA_FLAGS already sets the count (tests, a user's own flags), that setting wins.
"""

from __future__ import annotations

import os
import sys

from gssm_jax.runtime.hostmem import cpu_only

FLAG = "--xla_force_host_platform_device_count"


def cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def count_for(setting: int, batch_size: int) -> int:
    """The device count `setting` asks for with this global batch (0: leave XLA's default)."""
    if setting == -1:
        return max(d for d in range(1, cores() + 1) if batch_size % d == 0)
    if setting < -1:
        raise ValueError(f"runtime.cpu_devices must be -1, 0 or a count >= 1, got {setting}")
    return setting


def flagged_count() -> int | None:
    """The device count XLA_FLAGS already sets, or None."""
    for flag in os.environ.get("XLA_FLAGS", "").split():
        if flag.startswith(FLAG + "="):
            return int(flag.split("=", 1)[1])
    return None


def _jax_started() -> bool:
    """True once JAX has created its clients (XLA_FLAGS is read then, so a change comes too late)."""
    if "jax" not in sys.modules:
        return False
    from jax._src import xla_bridge

    return xla_bridge.backends_are_initialized()


def apply(setting: int, batch_size: int) -> int:
    """Puts the count `setting` asks for into XLA_FLAGS when JAX runs on the CPU and has not
    started yet; returns the CPU device count in force (1 when XLA's default stays)."""
    flagged = flagged_count()
    if flagged is not None:
        return flagged
    if _jax_started():  # e.g. a CLI's main() called in a process that already uses JAX
        import jax

        return len(jax.devices("cpu"))
    count = count_for(setting, batch_size)
    if count <= 1 or not cpu_only():
        return 1
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FLAG}={count}".strip()
    return count
