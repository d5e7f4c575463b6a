"""Data and tensor parallelism on 8 host devices reproduce the one-device loss trajectory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import subprocess_env

SCRIPT = Path(__file__).with_name("sharded_run.py")


def test_meshes_give_the_one_device_trajectory_with_params_sharded_over_model():
    """Also with model.attention='xla' on (4, 2): the one-device run uses the blocked kernel."""
    env = subprocess_env(XLA_FLAGS="--xla_force_host_platform_device_count=8")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = json.loads(proc.stdout.strip().splitlines()[-1])
    reference = runs["1x1"]["losses"]
    assert reference[-1] < reference[0]
    for name in ("8x1", "4x2", "2x4", "4x2_xla"):
        assert runs[name]["devices"] == 8
        losses = runs[name]["losses"]
        for got, want in zip(losses, reference, strict=True):
            assert abs(got - want) <= 1e-5 * abs(want), (name, losses, reference)
    for name, model in (("8x1", 1), ("4x2", 2), ("2x4", 4), ("4x2_xla", 2)):
        specs = runs[name]["specs"]
        assert specs["qkv"] == [None, None, "model", None], specs
        assert specs["out"] == ["model", None, None], specs
        assert specs["gate_up"] == [None, None, "model"], specs
        assert specs["down"] == ["model", None], specs
        assert specs["gate_up_adam_mu"] == [None, None, "model"], specs
        assert runs[name]["shard_shapes"]["gate_up"] == [[32, 2, 64 // model]]
