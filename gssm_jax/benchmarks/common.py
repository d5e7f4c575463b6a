"""What a benchmark's numbers were measured on, including the load other processes put on it."""

from __future__ import annotations

import os
import platform


def machine() -> dict:
    """CPU model and count, platform, JAX version and backend, device kind, XLA flags, load."""
    import jax  # lazily: bench train sets malloc options before JAX starts

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "jax_version": jax.__version__,
        "jax_backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "loadavg_1min": round(os.getloadavg()[0], 2),
    }
