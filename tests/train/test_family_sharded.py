"""Every recurrent family on 8 host devices, data- and tensor-parallel, reproduces its one-device
loss trajectory (the transformer's own test is test_sharded.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import subprocess_env

SCRIPT = Path(__file__).with_name("family_sharded_run.py")


def test_meshes_give_the_one_device_trajectory_for_every_recurrent_family():
    env = subprocess_env(XLA_FLAGS="--xla_force_host_platform_device_count=8")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    families = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sorted(families) == ["hawk", "mamba", "mingru", "minlstm"]
    for family, runs in families.items():
        reference = runs["1x1"]["losses"]
        assert reference[-1] < reference[0], (family, reference)
        for name in ("8x1", "4x2"):
            for got, want in zip(runs[name]["losses"], reference, strict=True):
                assert abs(got - want) <= 1e-5 * abs(want), (family, name, runs[name], reference)
        # The widest projection's output width is split over the model axis on (4, 2) only.
        assert "model" in runs["4x2"]["spec"], (family, runs["4x2"]["spec"])
        assert runs["4x2"]["shard_size"] * 2 == runs["4x2"]["size"], (family, runs["4x2"])
        assert runs["8x1"]["shard_size"] == runs["8x1"]["size"], (family, runs["8x1"])
