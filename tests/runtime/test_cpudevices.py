"""`runtime.cpu_devices`: the XLA CPU device split, requested before JAX starts its client."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT, subprocess_env

from gssm_jax.config import ConfigError, default_config, validate
from gssm_jax.runtime import cpudevices


def test_count_for_per_core_takes_the_largest_count_dividing_the_batch(monkeypatch):
    monkeypatch.setattr(cpudevices, "cores", lambda: 4)
    assert cpudevices.count_for(-1, 16) == 4
    assert cpudevices.count_for(-1, 6) == 3
    assert cpudevices.count_for(-1, 7) == 1
    assert cpudevices.count_for(0, 16) == 0 and cpudevices.count_for(3, 16) == 3
    with pytest.raises(ValueError, match="runtime.cpu_devices"):
        cpudevices.count_for(-2, 16)


def test_apply_leaves_a_count_that_xla_flags_already_sets(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", f"--foo {cpudevices.FLAG}=8")
    assert cpudevices.apply(2, 16) == 8
    assert cpudevices.flagged_count() == 8


def test_apply_once_jax_has_started_changes_nothing(monkeypatch):
    import jax

    jax.devices()  # this process's client exists
    monkeypatch.setenv("XLA_FLAGS", "")
    assert cpudevices.apply(2, 16) == len(jax.devices("cpu"))
    assert cpudevices.FLAG not in (cpudevices.os.environ.get("XLA_FLAGS") or "")


def test_a_fresh_process_gets_the_requested_devices():
    code = (
        "from gssm_jax.runtime import cpudevices; n = cpudevices.apply(2, 16); import jax; "
        "print(n, jax.device_count())"
    )
    env = subprocess_env(JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = " ".join(
        f for f in env["XLA_FLAGS"].split() if not f.startswith(cpudevices.FLAG)
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "2"]


@pytest.mark.parametrize("value", [-2, 3])
def test_config_rejects_a_count_that_cannot_split_the_batch(value):
    c = default_config()
    c.runtime.cpu_devices = value  # the debug batch is 32
    with pytest.raises(ConfigError, match="runtime.cpu_devices"):
        validate(c)
