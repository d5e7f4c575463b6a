"""Two JAX processes on this host (gloo collectives) train the same model as one process."""

from __future__ import annotations

import socket
import subprocess

import numpy as np
from conftest import main_cmd, read_jsonl, subprocess_env

STEPS = [
    "--config.optim.steps=12",
    "--config.optim.warmup=2",
    "--config.log.period=2",
    "--config.eval.period=6",
    "--config.checkpoint.period=6",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one(tmp_path, run_main):
    single = tmp_path / "single"
    code, out = run_main(single, *STEPS)
    assert code == 0, out

    multi = tmp_path / "multi"
    port = _free_port()
    env = subprocess_env(XLA_FLAGS="--xla_force_host_platform_device_count=2")
    procs = [
        subprocess.Popen(
            main_cmd(
                multi,
                *STEPS,
                f"--config.distributed.coordinator=127.0.0.1:{port}",
                "--config.distributed.num_processes=2",
                f"--config.distributed.process_id={i}",
            ),
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for i, (p, out) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, out
        assert f"process_index={i} process_count=2 devices=4" in out, out
    a = read_jsonl(single / "metrics" / "train.jsonl")
    b = read_jsonl(multi / "metrics" / "train.jsonl")
    assert [r["step"] for r in a] == [r["step"] for r in b]
    np.testing.assert_allclose([r["loss"] for r in b], [r["loss"] for r in a], rtol=1e-5)
    np.testing.assert_allclose([r["entropy"] for r in b], [r["entropy"] for r in a], rtol=1e-5)
