"""Host malloc settings: the mode switch, CPU detection, and that mallopt really takes them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gssm_jax.runtime import hostmem


def test_off_changes_nothing_and_bad_modes_are_named():
    assert hostmem.apply("off") is False
    with pytest.raises(ValueError, match="'sometimes'"):
        hostmem.apply("sometimes")


@pytest.mark.parametrize(
    ("platforms", "cpu"), [("cpu", True), ("cuda", False), ("cuda,cpu", False)]
)
def test_jax_platforms_decides_cpu_only(monkeypatch, platforms, cpu):
    monkeypatch.setenv("JAX_PLATFORMS", platforms)
    assert hostmem.cpu_only() is cpu


def test_without_jax_platforms_an_accelerator_plugin_means_not_cpu_only(monkeypatch):
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    monkeypatch.setattr(hostmem, "ACCELERATOR_PLUGINS", ("json",))  # a module that exists
    assert hostmem.cpu_only() is False
    monkeypatch.setattr(hostmem, "ACCELERATOR_PLUGINS", ("no_such_plugin_module",))
    assert hostmem.cpu_only() is True


def test_on_keeps_a_freed_large_block_mapped():
    """After free(), a 64 MiB block stays in the heap with the settings and is unmapped without."""
    probe = (
        "import ctypes, resource, sys\n"
        "from gssm_jax.runtime import hostmem\n"
        "kept = hostmem.apply(sys.argv[1])\n"
        "libc = ctypes.CDLL('libc.so.6')\n"
        "libc.malloc.restype = ctypes.c_void_p\n"
        "libc.free.argtypes = [ctypes.c_void_p]\n"
        "def rss():\n"
        "    return int(open('/proc/self/statm').read().split()[1]) * resource.getpagesize()\n"
        "p = libc.malloc(64 << 20)\n"
        "ctypes.memset(p, 1, 64 << 20)\n"
        "before = rss()\n"
        "libc.free(p)\n"
        "print(kept, (before - rss()) >> 20)\n"
    )
    results = {}
    for mode in ("on", "off"):
        out = subprocess.run(
            [sys.executable, "-c", probe, mode], capture_output=True, text=True, check=True
        )
        kept, released_mib = out.stdout.split()
        results[mode] = (kept, int(released_mib))
    assert results["on"][0] == "True" and results["on"][1] < 8, results
    assert results["off"][0] == "False" and results["off"][1] >= 60, results
