"""launch.submit on a real one-node Slurm cluster started by the test (see conftest.py).

Runs the real `gssm_jax.main` on the debug config, shrunk to a few dozen steps:
a 2-task job forming one 2-process JAX runtime, a 2-point grid as a job array, a job that gets
its preemption signal mid-run, requeues itself and resumes to the same losses as an
uninterrupted run, and the refusals (bad grid key, existing run directory, hostile name).
Set GSSM_LAUNCH_TEST_STAND_IN=1 to run the same Slurm mechanics with the JAX-free stand-in
trainer of stand_in_main.py (seconds instead of minutes).
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from pathlib import Path

import pytest
from launch_harness import SlurmCluster, copy_repo, make_stand_in_repo, run_submit, slurm_cluster

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.timeout(900)]

STAND_IN = os.environ.get("GSSM_LAUNCH_TEST_STAND_IN") == "1"
SHORT_RUN = (
    "--config.optim.steps=30",
    "--config.optim.warmup=5",
    "--config.data.seq_len=64",
    "--config.log.period=1",
    "--config.eval.period=15",
    "--config.eval.batches=2",
    "--config.checkpoint.period=15",
)
JOB_TIMEOUT = 480


@pytest.fixture(scope="module")
def cluster():
    with slurm_cluster() as started:
        yield started


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """One copy of the code for every job here, so the reference and the resumed run match."""
    folder = tmp_path_factory.mktemp("repo")
    return make_stand_in_repo(folder) if STAND_IN else copy_repo(folder)


def submit(cluster: SlurmCluster, repo: Path, *args: str) -> str:
    """Submits with launch.submit; returns the Slurm job id."""
    out = run_submit(repo, *args, env=cluster.env)
    assert out.returncode == 0, out.stdout + out.stderr
    match = re.search(r"submitted job (\d+)", out.stdout)
    assert match, out.stdout
    return match.group(1)


def job_records(cluster: SlurmCluster, job_id: str) -> list[dict[str, str]]:
    """`scontrol show job` of a job (one record per array task) as key -> value dicts."""
    out = cluster.cmd("scontrol", "-o", "show", "job", job_id)
    records = []
    for line in out.stdout.splitlines():
        records.append(dict(re.findall(r"(\w+)=(\S*)", line)))
    return records


def wait_job(cluster: SlurmCluster, job_id: str, run_dir: Path, timeout: float = JOB_TIMEOUT):
    """Waits for every task of `job_id` to end; returns their scontrol records."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = job_records(cluster, job_id)
        if records and all(
            r["JobState"]
            in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY")
            for r in records
        ):
            return records
        time.sleep(1)
    pytest.fail(f"job {job_id} still running after {timeout}s:\n{logs(run_dir)}\n{cluster.logs()}")


def logs(run_dir: Path) -> str:
    return "\n".join(f"--- {p}\n{p.read_text()}" for p in sorted(run_dir.glob("stdout/*.out")))


def assert_completed(records: list[dict[str, str]], run_dir: Path) -> None:
    for r in records:
        assert (r["JobState"], r["ExitCode"]) == ("COMPLETED", "0:0"), logs(run_dir)


def losses(workdir: Path) -> dict[int, float]:
    lines = (workdir / "metrics" / "train.jsonl").read_text().splitlines()
    return {rec["step"]: rec["loss"] for rec in map(json.loads, lines)}


def checkpoint_steps(workdir: Path) -> list[int]:
    ckpt = workdir / "checkpoints"
    if STAND_IN:
        return [json.loads((ckpt / "step.json").read_text())["step"]]
    return sorted(int(p.name) for p in ckpt.iterdir() if p.name.isdigit())


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("slurm-runs")


@pytest.fixture(scope="module")
def reference(cluster, repo, root) -> Path:
    """(a) The debug config as one job of 2 Slurm tasks: one JAX runtime of 2 processes."""
    job = submit(
        cluster,
        repo,
        "--name",
        "two-process",
        "--root",
        str(root),
        *SHORT_RUN,
        "--config.slurm.tasks_per_node=2",
    )
    run_dir = root / "two-process"
    assert_completed(wait_job(cluster, job, run_dir), run_dir)
    return run_dir


def test_two_process_job(reference):
    log = (reference / "stdout" / "0.out").read_text()
    assert "process_index=0 process_count=2" in log, log
    assert "process_index=1 process_count=2" in log, log
    workdir = reference / "runs" / "0"
    assert checkpoint_steps(workdir)[-1] == 30
    assert sorted(losses(workdir)) == list(range(1, 31))
    if not STAND_IN:
        assert (workdir / "metrics" / "eval.jsonl").is_file()
        assert json.loads((workdir / "config.json").read_text())["optim"]["steps"] == 30


def test_grid_as_job_array_with_hostile_name(cluster, repo, root, tmp_path):
    """(b) + (d) A 2-point grid is a 2-task array; a name and a value with `;` stay inert."""
    marker = Path(f"/tmp/gssm-pwned-{uuid.uuid4().hex}")
    grid = tmp_path / "grid.py"
    grid.write_text("def get_grid():\n    return {'optim.lr': [0.001, 0.003]}\n")
    name = f"sweep; touch {marker}"
    job = submit(
        cluster,
        repo,
        "--name",
        name,
        "--root",
        str(root),
        "--grid",
        str(grid),
        *SHORT_RUN,
        "--config.optim.steps=10",
        f"--config.data.path=$(touch {marker})",
    )
    run_dir = root / name
    records = wait_job(cluster, job, run_dir)
    assert len(records) == 2
    assert_completed(records, run_dir)
    assert not marker.exists()
    for task, lr in enumerate([0.001, 0.003]):
        assert (
            json.loads((run_dir / "tasks" / f"{task}.json").read_text())["config"]["optim"]["lr"]
            == lr
        )
        workdir = run_dir / "runs" / str(task)
        assert max(losses(workdir)) == 10
        if not STAND_IN:
            assert json.loads((workdir / "config.json").read_text())["optim"]["lr"] == lr
        assert "process_count=1" in (run_dir / "stdout" / f"{task}.out").read_text()


def test_signal_requeues_and_resumes_exactly(cluster, repo, root, reference):
    """(c) USR1 mid-run: checkpoint, exit 75, requeue, resume; losses match the reference."""
    job = submit(
        cluster,
        repo,
        "--name",
        "preempted",
        "--root",
        str(root),
        *SHORT_RUN,
        "--config.slurm.tasks_per_node=2",
    )
    run_dir = root / "preempted"
    train = run_dir / "runs" / "0" / "metrics" / "train.jsonl"
    deadline = time.monotonic() + JOB_TIMEOUT
    while not (train.exists() and train.read_text().strip()):
        assert time.monotonic() < deadline, logs(run_dir)
        state = job_records(cluster, job)[0]["JobState"]
        assert state in ("PENDING", "RUNNING"), f"{state}\n{logs(run_dir)}"
        time.sleep(0.2)
    cluster.cmd("scancel", "--signal=USR1", job, check=True)
    records = wait_job(cluster, job, run_dir)
    assert_completed(records, run_dir)
    assert records[0]["Restarts"] == "1", logs(run_dir)
    log = (run_dir / "stdout" / "0.out").read_text()
    assert "exiting with code 75" in log and "requeueing job" in log, log
    assert "resumed from" in log, log
    got, want = losses(run_dir / "runs" / "0"), losses(reference / "runs" / "0")
    assert sorted(got) == sorted(want)
    assert max(abs(got[s] - want[s]) for s in want) <= 1e-6


def test_refusals_submit_nothing(cluster, repo, root, tmp_path, reference):
    """(d) A bad grid key and an existing run directory fail before anything is written."""
    grid = tmp_path / "grid.py"
    grid.write_text("def get_grid():\n    return {'optim.lr': [0.1], 'optim.no_such_key': [1]}\n")
    queued = cluster.cmd("squeue", "-h").stdout
    bad = run_submit(
        repo, "--name", "bad-grid", "--root", str(root), "--grid", str(grid), env=cluster.env
    )
    assert bad.returncode == 2 and "optim.no_such_key" in bad.stderr
    assert not (root / "bad-grid").exists()
    again = run_submit(repo, "--name", "two-process", "--root", str(root), env=cluster.env)
    assert again.returncode == 2 and "exists" in again.stderr
    assert (reference / "runs" / "0" / "checkpoints").is_dir()
    assert cluster.cmd("squeue", "-h").stdout == queued


def test_time_limit_signal_requeues_and_resumes(cluster, repo, root):
    """(e) A real time limit: Slurm itself sends USR1 `signal_seconds` before it, the run saves and
    exits 75, the task requeues and the next attempt resumes from that checkpoint."""
    job = submit(
        cluster,
        repo,
        "--name",
        "time-limit",
        "--root",
        str(root),
        "--config.optim.steps=1000000",  # far more than fits in the limit
        "--config.data.seq_len=32",
        "--config.model.nb_layers=1",
        "--config.log.period=10",
        "--config.eval.period=1000000",
        "--config.eval.batches=1",
        "--config.checkpoint.period=1000000",  # only the stop signal saves
        "--config.slurm.time=3",
        "--config.slurm.signal_seconds=150",
    )
    run_dir = root / "time-limit"
    out = run_dir / "stdout" / "0.out"
    deadline = time.monotonic() + JOB_TIMEOUT
    while "resumed from" not in (out.read_text() if out.exists() else ""):
        assert time.monotonic() < deadline, logs(run_dir) + cluster.logs()
        state = job_records(cluster, job)[0]["JobState"]
        assert state in ("PENDING", "RUNNING", "REQUEUED"), f"{state}\n{logs(run_dir)}"
        time.sleep(1)
    cluster.cmd("scancel", job, check=True)
    wait_job(cluster, job, run_dir)
    log = out.read_text()
    assert "received SIGUSR1" in log and "exiting with code 75" in log, log
    assert "requeueing job" in log, log
    assert int(job_records(cluster, job)[0]["Restarts"]) >= 1
    saved = re.search(r"checkpoint saved at step (\d+)", log)
    assert saved and f"checkpoints/{saved.group(1)}" in log.split("resumed from", 1)[1], log
