"""Data and tensor parallelism on 8 host devices reproduce the one-device loss trajectory, for the
transformer and for every recurrent family (both through sharded_run.py)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from conftest import subprocess_env

SCRIPT = Path(__file__).with_name("sharded_run.py")


def _sharded_runs(*families: str, timeout: float) -> dict:
    """sharded_run.py's JSON for `families`, run on 8 host devices."""
    env = subprocess_env(XLA_FLAGS="--xla_force_host_platform_device_count=8")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *families],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_meshes_give_the_one_device_trajectory_with_params_sharded_over_model():
    """Also with model.transformer.attention='xla' on (4, 2): the one-device run uses the blocked kernel."""
    runs = _sharded_runs("transformer", timeout=600)["transformer"]
    reference = runs["1x1"]["losses"]
    assert reference[-1] < reference[0]
    for name in ("8x1", "4x2", "2x4", "4x2_xla"):
        assert runs[name]["devices"] == 8
        losses = runs[name]["losses"]
        for got, want in zip(losses, reference, strict=True):
            assert abs(got - want) <= 1e-5 * abs(want), (name, losses, reference)
    for name, model in (("8x1", 1), ("4x2", 2), ("2x4", 4), ("4x2_xla", 2)):
        specs = {k: v["spec"] for k, v in runs[name]["params"].items()}
        assert specs["qkv"] == [None, None, "model", None], specs
        assert specs["out"] == ["model", None, None], specs
        assert specs["gate_up"] == [None, None, "model"], specs
        assert specs["down"] == ["model", None], specs
        assert specs["gate_up_adam_mu"] == [None, None, "model"], specs
        assert runs[name]["params"]["gate_up"]["shard_shape"] == [32, 2, 64 // model]


def test_meshes_give_the_one_device_trajectory_for_every_recurrent_family():
    families = _sharded_runs("mamba", "hawk", "mingru", "minlstm", timeout=900)
    assert sorted(families) == ["hawk", "mamba", "mingru", "minlstm"]
    for family, runs in families.items():
        reference = runs["1x1"]["losses"]
        assert reference[-1] < reference[0], (family, reference)
        for name in ("8x1", "4x2"):
            for got, want in zip(runs[name]["losses"], reference, strict=True):
                assert abs(got - want) <= 1e-5 * abs(want), (family, name, runs[name], reference)
        # The widest projection's output width is split over the model axis on (4, 2) only.
        split, whole = (runs[name]["params"]["widest"] for name in ("4x2", "8x1"))
        assert "model" in split["spec"], (family, split)
        assert math.prod(split["shard_shape"]) * 2 == math.prod(split["shape"]), (family, split)
        assert whole["shard_shape"] == whole["shape"], (family, whole)
