"""Host malloc settings for XLA:CPU: keep freed memory mapped instead of faulting it in every step.

XLA:CPU allocates each step's temporaries afresh. glibc serves blocks of that size with mmap and
unmaps them on free, so every step page-faults all of its temporaries in again (on the 2-core CI
machine: about 37k faults and 60 ms of a 110 ms debug-config step). One malloc arena, no mmap and
no trimming keep those pages mapped after the first step; the price is that the process keeps its
peak heap (about +20% RSS on the debug config). The settings must be made before JAX starts its
threads, so this module imports nothing heavy.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os

M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8  # glibc mallopt parameters
MODES = ("auto", "on", "off")
ACCELERATOR_PLUGINS = (  # modules whose presence means JAX may run on something other than CPU
    "jax_cuda12_plugin",
    "jax_cuda13_plugin",
    "jax_rocm60_plugin",
    "jax_rocm7_plugin",
    "libtpu",
)


def keep_freed_memory() -> bool:
    """Tells glibc malloc to reuse freed memory; False where mallopt is unavailable (not glibc)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    ok = libc.mallopt(M_ARENA_MAX, 1) == 1
    ok &= libc.mallopt(M_MMAP_MAX, 0) == 1
    ok &= libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
    return bool(ok)


def cpu_only() -> bool:
    """True when JAX will run on the CPU: JAX_PLATFORMS says so, or no accelerator plugin exists."""
    platforms = os.environ.get("JAX_PLATFORMS", "")
    if platforms:
        return platforms.split(",")[0].strip() == "cpu"
    return not any(importlib.util.find_spec(name) for name in ACCELERATOR_PLUGINS)


def apply(mode: str) -> bool:
    """`runtime.keep_freed_memory`: on, off, or auto (on when JAX runs on the CPU). Returns
    whether the settings are in force."""
    if mode not in MODES:
        raise ValueError(f"keep_freed_memory must be one of {MODES}, got {mode!r}")
    if mode == "off" or (mode == "auto" and not cpu_only()):
        return False
    return keep_freed_memory()
