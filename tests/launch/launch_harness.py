"""Helpers of the launcher tests: a throwaway repository copy with a stand-in trainer, and a real
one-node Slurm cluster (munged + slurmctld + slurmd as root) started in a temporary folder.

Not a conftest.py: tests/conftest.py is imported by name (`from conftest import ...`) elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STAND_IN = Path(__file__).with_name("stand_in_main.py")
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "scontrol", "squeue", "scancel")


def run_submit(repo: Path, *args: str, env: dict | None = None, timeout: float = 300):
    """`python -m launch.submit ARGS` in `repo`, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "launch.submit", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def copy_repo(repo: Path) -> Path:
    """gssm_jax/, configs/ and launch/ copied to `repo`: submissions from there all get the same
    code, even while someone edits the checkout."""
    for part in ("gssm_jax", "configs", "launch"):
        shutil.copytree(REPO / part, repo / part, ignore=shutil.ignore_patterns("__pycache__"))
    return repo


def make_stand_in_repo(repo: Path) -> Path:
    """A copy of the repository (see copy_repo) whose gssm_jax/main.py is the stand-in."""
    copy_repo(repo)
    shutil.copy(STAND_IN, repo / "gssm_jax" / "main.py")
    return repo


# --- a real Slurm cluster -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _install_slurm() -> str | None:
    """Installs slurm-wlm and munge with apt-get when they are missing; None or why it cannot."""
    if all(shutil.which(d) for d in DAEMONS):
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "slurm-wlm/munge are not installed and apt-get cannot run here (needs root + apt)"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "slurm-wlm", "munge"],
    ):
        try:
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"`{' '.join(cmd)}` failed: {e}"
        if out.returncode != 0:
            return f"`{' '.join(cmd)}` failed: {out.stderr.strip()[-500:]}"
    missing = [d for d in DAEMONS if shutil.which(d) is None]
    return f"still missing after apt-get install: {missing}" if missing else None


# NodeName=localhost: the JAX coordinator is the step's first node, so its name must resolve anywhere.
# SlurmdParameters=config_overrides: the node registers as CPUs=2 whatever the machine has.
# sched_interval=2 and cred_expire=5: a requeued job starts again within seconds, not minutes.
SLURM_CONF = """\
ClusterName=gssmtest
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={dir}/munge.socket,cred_expire=5
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=2
SlurmdParameters=config_overrides
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
ReturnToService=2
KillWait=15
MinJobAge=3600
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 RealMemory=1024 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


class SlurmCluster:
    """munged, slurmctld and slurmd in the foreground, all state under one temporary folder."""

    def __init__(self, folder: Path) -> None:
        self.dir = folder
        self.conf = folder / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        self.procs: list[subprocess.Popen] = []
        self._logs: list = []

    def _spawn(self, name: str, *cmd: str) -> None:
        log = open(self.dir / f"{name}.out", "w")  # noqa: SIM115 (closed in stop())
        self._logs.append(log)
        self.procs.append(
            subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        )

    def start(self) -> None:
        d = self.dir
        for sub in ("state", "spool"):
            (d / sub).mkdir()
        key = d / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o400)
        self._spawn(
            "munged",
            "munged",
            "--foreground",
            "--force",
            f"--socket={d}/munge.socket",
            f"--key-file={key}",
            f"--log-file={d}/munged.log",
            f"--pid-file={d}/munged.pid",
            f"--seed-file={d}/munged.seed",
        )
        self._wait_for(lambda: (d / "munge.socket").exists(), 30, "munged socket")
        self.conf.write_text(
            SLURM_CONF.format(
                host=socket.gethostname().split(".")[0],
                dir=d,
                ctld_port=_free_port(),
                slurmd_port=_free_port(),
            )
        )
        self._spawn("slurmctld", "slurmctld", "-D", "-f", str(self.conf))
        self._spawn("slurmd", "slurmd", "-D", "-N", "localhost", "-f", str(self.conf))
        self._wait_for(
            lambda: self.cmd("sinfo", "-h", "-o", "%T").stdout.strip() == "idle",
            90,
            "the node to be idle",
        )

    def _wait_for(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [p.args[0] for p in self.procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(
                    f"Slurm test cluster: no {what} (exited: {dead}):\n{self.logs()}"
                )
            time.sleep(0.5)

    def cmd(self, *args: str, check: bool = False) -> subprocess.CompletedProcess:
        return subprocess.run(
            args, env=self.env, capture_output=True, text=True, timeout=60, check=check
        )

    def logs(self) -> str:
        parts = []
        for name in ("munged.out", "slurmctld.log", "slurmd.log"):
            path = self.dir / name
            if path.exists():
                parts.append(f"--- {name}\n" + "\n".join(path.read_text().splitlines()[-20:]))
        return "\n".join(parts)

    def stop(self) -> None:
        """Cancels every job, waits for its processes to go, then stops the daemons."""
        try:
            self.cmd("scancel", "--full", "--signal=KILL", "--user=root")
            self.cmd("scancel", "--user=root")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and self.cmd("squeue", "-h").stdout.strip():
                time.sleep(1)
        except (OSError, subprocess.SubprocessError):
            pass
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self._logs:
            log.close()


@contextlib.contextmanager
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A started cluster, stopped and deleted on exit; pytest.skip() when Slurm cannot be had."""
    reason = _install_slurm()
    if reason:
        pytest.skip(f"no Slurm test cluster: {reason}")
    if os.geteuid() != 0:
        pytest.skip("no Slurm test cluster: slurmd must run as root")
    folder = Path(tempfile.mkdtemp(prefix="gssm-slurm-"))
    folder.chmod(0o700)
    cluster = SlurmCluster(folder)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)
