"""Submit a training run, or a sweep as a job array, to Slurm (or run it on this host).

    python -m launch.submit --config FILE [--grid GRIDFILE] [--name NAME] [--root DIR]
        [--dry-run | --local] [--overwrite] [--config.key=value ...] [--config.slurm.key=value ...]

It resolves one config per grid point (exactly as `gssm_jax.main` will parse it), writes the run
directory (see launch/sweep_root.py), and submits `run.sh` with sbatch; `--local` runs `bash run.sh`
here instead, `--dry-run` prints the script and the tasks and writes nothing. Nothing is written
before every task's config has been checked.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import getpass
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from launch import grid as grid_lib
from launch import script, slurm_config, sweep_root, tasks

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = os.environ.get("GSSM_RUNS", os.path.join("~", "gssm_runs"))
ERRORS = (
    grid_lib.GridError,
    sweep_root.RunDirError,
    script.ScriptError,
    slurm_config.SlurmConfigError,
    tasks.TaskError,
)


class SubmitError(ValueError):
    """A submission that cannot go ahead, with the reason."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything a submission will write, computed before anything is written."""

    name: str
    run_dir: Path
    config_path: Path
    config_in_code: Path  # the config file gssm_jax.main reads in the job
    config_suffix: str  # ":ARG" passed to its get_config, or ""
    tasks: list[tasks.Task]
    slurm: slurm_config.SlurmConfig
    script: str


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m launch.submit", description=__doc__.split("\n\n")[0], allow_abbrev=False
    )
    parser.add_argument(
        "--config",
        default=str(REPO_ROOT / "configs" / "debug.py"),
        help="ml_collections config file, optionally FILE:ARG (default: debug)",
    )
    parser.add_argument("--grid", help="Python file whose get_grid() returns {key: [values]}")
    parser.add_argument("--name", help="run name (default: CONFIG[-GRID]-YYYYmmdd-HHMMSS)")
    parser.add_argument(
        "--root",
        default=DEFAULT_ROOT,
        help="folder of run directories (default: $GSSM_RUNS or ~/gssm_runs)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--dry-run",
        action="store_true",
        help="print the script and tasks; write and submit nothing",
    )
    mode.add_argument("--local", action="store_true", help="run the job script here with bash")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="delete an existing run directory of the same name first",
    )
    return parser.parse_known_args(list(argv))


def split_config_arg(config_arg: str) -> tuple[Path, str]:
    """(file, ':arg' or '') of a config_flags `FILE[:ARG]` value."""
    match = re.match(r"^(.*?\.py)(:.*)?$", config_arg)
    if not match:
        raise SubmitError(f"--config {config_arg!r}: expected a Python config file, FILE[:ARG]")
    path = Path(match.group(1)).expanduser().absolute()
    if not path.is_file():
        raise SubmitError(f"--config {config_arg!r}: no such file {str(path)!r}")
    return path, match.group(2) or ""


def default_name(config_path: Path, grid_path: str | None) -> str:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    parts = [config_path.stem, Path(grid_path).stem if grid_path else "", stamp]
    return "-".join(p for p in parts if p)


def exit_preempted() -> int:
    """gssm_jax.main's exit code for "checkpoint saved on a signal, run again to resume"."""
    from gssm_jax.runtime.exitcodes import EXIT_PREEMPTED

    return EXIT_PREEMPTED


def validate_tasks(task_list: Sequence[tasks.Task]) -> None:
    """gssm_jax's own config checks on every task, so a bad grid point fails here, not in a job."""
    from gssm_jax.config import validate

    for task in task_list:
        try:
            validate(task.config)
        except ValueError as e:
            raise SubmitError(f"task {task.task_id} {task.grid_point}: {e}") from None


def plan(args: argparse.Namespace, extra: Sequence[str]) -> Plan:
    """Checks everything and renders the script; raises one of ERRORS or SubmitError."""
    config_path, config_suffix = split_config_arg(args.config)
    name = args.name if args.name is not None else default_name(config_path, args.grid)
    sweep_root.check_name(name)
    sweep_root.check_root(Path(args.root).expanduser().absolute())
    run_dir = Path(args.root).expanduser().absolute() / name
    script.check_path(run_dir)
    sweep_root.check_target(run_dir, args.overwrite)

    overrides, slurm_overrides = tasks.split_overrides(extra)
    config_arg = f"{config_path}{config_suffix}"
    base = tasks.load_config(config_arg)
    tasks.check_override_keys(base, overrides)
    grid = grid_lib.load_grid(args.grid) if args.grid else {}
    grid_lib.check_grid_keys(grid, base)
    section = base.slurm if "slurm" in base else None
    slurm = slurm_config.slurm_config(section, slurm_overrides)
    task_list = tasks.make_tasks(config_arg, overrides, grid)
    validate_tasks(task_list)

    in_code = sweep_root.snapshot_config(REPO_ROOT, config_path, run_dir / "code")
    text = script.render(
        name=name,
        run_dir=run_dir,
        python=sys.executable,
        config_file=f"{in_code}{config_suffix}",
        tasks=task_list,
        slurm=slurm,
        exit_preempted=exit_preempted(),
    )
    return Plan(name, run_dir, config_path, in_code, config_suffix, task_list, slurm, text)


def describe_tasks(p: Plan) -> str:
    lines = [f"{len(p.tasks)} task(s) in {p.run_dir}, {p.slurm.num_processes} process(es) each:"]
    for task in p.tasks:
        point = " ".join(f"{k}={v!r}" for k, v in task.grid_point.items()) or "(no grid)"
        lines.append(f"  task {task.task_id}: {point} -> runs/{task.task_id}")
    return "\n".join(lines)


def git_state(repo_root: Path) -> dict[str, str | bool | None]:
    def git(*cmd: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(repo_root), *cmd],
                capture_output=True,
                text=True,
                timeout=20,
                check=True,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    status = git("status", "--porcelain")
    return {"commit": git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)}


def write(p: Plan, argv: Sequence[str], overwrite: bool, mode: str) -> None:
    record = {
        "name": p.name,
        "argv": list(argv),
        "cwd": os.getcwd(),
        "user": getpass.getuser(),
        "host": socket.gethostname(),
        "submitted_at": datetime.datetime.now().isoformat(timespec="seconds"),
        "git": git_state(REPO_ROOT),
        "mode": mode,
        "slurm": dataclasses.asdict(p.slurm),
        "job_id": None,
    }
    config_file = f"{p.config_in_code}{p.config_suffix}"
    files = {
        t.task_id: t.to_json(config_file, str(p.run_dir / "runs" / str(t.task_id))) for t in p.tasks
    }
    sweep_root.write_run_dir(
        run_dir=p.run_dir,
        repo_root=REPO_ROOT,
        config_path=p.config_path,
        config_in_code=p.config_in_code,
        script=p.script,
        task_files=files,
        submit_record=record,
        overwrite=overwrite,
    )


def sbatch(p: Plan) -> str:
    """Submits run.sh; returns the job id."""
    if shutil.which("sbatch") is None:
        raise SubmitError("sbatch not found on PATH: use --local to run here, or --dry-run")
    out = subprocess.run(
        ["sbatch", "--parsable", str(p.run_dir / "run.sh")],
        cwd=p.run_dir,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise SubmitError(f"sbatch failed (exit {out.returncode}): {out.stderr.strip()}")
    return out.stdout.strip().split(";")[0]


def record_job(p: Plan, job_id: str) -> None:
    path = p.run_dir / "submit.json"
    record = json.loads(path.read_text())
    record["job_id"] = job_id
    sweep_root.write_record(p.run_dir, record)


def run_local(p: Plan) -> int:
    """`bash run.sh` here; SIGTERM/SIGUSR1 to this process are passed on, Ctrl-C reaches bash."""
    env = dict(os.environ, GSSM_LAUNCH="local")
    child = subprocess.Popen(["bash", str(p.run_dir / "run.sh")], cwd=p.run_dir, env=env)

    def forward(signum: int, frame: object) -> None:
        child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGUSR1)}
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, lambda signum, frame: None)
    try:
        return child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def submit(argv: Sequence[str]) -> int:
    args, extra = parse_args(argv)
    p = plan(args, extra)
    if args.dry_run:
        print(p.script)
        print(describe_tasks(p))
        print(f"dry run: nothing written, nothing submitted ({p.run_dir})")
        return 0
    write(p, argv, args.overwrite, "local" if args.local else "slurm")
    print(describe_tasks(p))
    if args.local:
        return run_local(p)
    try:
        job_id = sbatch(p)
    except SubmitError:
        sweep_root.remove_new_run_dir(p.run_dir, [t.task_id for t in p.tasks])
        raise
    record_job(p, job_id)
    print(
        f"submitted job {job_id}: logs in {p.run_dir}/stdout/, "
        f"cancel with `scancel {job_id}`, watch with `squeue -j {job_id}`"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return submit(sys.argv[1:] if argv is None else argv)
    except (SubmitError, *ERRORS) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
