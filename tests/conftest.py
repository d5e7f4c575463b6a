"""Shared test helpers: running `python -m gssm_jax.main` in a subprocess on a tiny config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A model and stream small enough that one run costs a few seconds on 2 cores.
TINY = [
    "--config.model.emb_dim=32",
    "--config.model.nb_layers=1",
    "--config.model.nb_heads=2",
    "--config.model.hidden_dim=64",
    "--config.data.seq_len=32",
    "--config.data.batch_size=8",
    "--config.eval.batches=1",
]


def main_cmd(workdir: Path, *overrides: str, config: str = "configs/debug.py") -> list[str]:
    return [
        sys.executable,
        "-m",
        "gssm_jax.main",
        f"--config={ROOT / config}",
        f"--workdir={workdir}",
        *TINY,
        *overrides,
    ]


# Exact-resume comparisons need bit-reproducible steps; XLA:CPU's multi-threaded Eigen kernels can
# change their summation order between processes (seen as a rare 2e-6 drift), so tests pin them.
DETERMINISTIC_XLA = "--xla_cpu_multi_thread_eigen=false"


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + DETERMINISTIC_XLA).strip()
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    for key, value in extra.items():
        env[key] = f"{value} {DETERMINISTIC_XLA}" if key == "XLA_FLAGS" else value
    return env


def run_cmd(cmd: list[str], cwd: Path, timeout: float = 300) -> tuple[int, str, str]:
    """Runs a command line to its end in the test environment: (returncode, stdout, stderr)."""
    proc = subprocess.run(
        cmd, cwd=cwd, env=subprocess_env(), capture_output=True, text=True, timeout=timeout
    )
    return proc.returncode, proc.stdout, proc.stderr


def start_cmd(cmd: list[str], cwd: Path, merge_stderr: bool = True) -> subprocess.Popen:
    """Starts a command line in the test environment, its output piped (stderr into stdout)."""
    return subprocess.Popen(
        cmd,
        cwd=cwd,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
        text=True,
    )


def read_jsonl(path: Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


# A 40-step run that logs, evaluates and checkpoints often enough to stop and resume mid-way.
RESUME_STEPS = [
    "--config.optim.steps=40",
    "--config.optim.warmup=4",
    "--config.log.period=2",
    "--config.eval.period=20",
    "--config.checkpoint.period=10",
]


def train_losses(workdir: Path) -> dict[int, float]:
    """step -> train loss, from a run's metrics/train.jsonl."""
    return {r["step"]: r["loss"] for r in read_jsonl(workdir / "metrics" / "train.jsonl")}


@pytest.fixture
def run_main(tmp_path):
    """Runs gssm_jax.main to completion; returns (returncode, output)."""

    def run(workdir: Path, *overrides: str, timeout: float = 300, config: str = "configs/debug.py"):
        proc = subprocess.run(
            main_cmd(workdir, *overrides, config=config),
            cwd=tmp_path,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return proc.returncode, proc.stdout + proc.stderr

    return run


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished 20-step TINY run with checkpoints (and held-out evals) at steps 10 and 20, shared
    by the evaluation and generation tests; tests that write into a run copy it first."""
    workdir = tmp_path_factory.mktemp("tiny_run") / "run"
    steps = ["--config.optim.steps=20", "--config.optim.warmup=2", "--config.log.period=10"]
    steps += ["--config.eval.period=10", "--config.checkpoint.period=10"]
    proc = subprocess.run(
        main_cmd(workdir, *steps),
        cwd=workdir.parent,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return workdir
