"""launch.submit without Slurm: the script it renders, grids, refusals, quoting, and `--local`
runs of the job script with the JAX-free stand-in trainer (stand_in_main.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from launch_harness import REPO, make_stand_in_repo, run_submit

from launch import grid as grid_lib
from launch import slurm_config, submit

SHORT = ("--config.optim.steps=40", "--config.optim.warmup=5", "--config.log.period=5")


def dry_run(capsys, *args: str) -> tuple[int, str, str]:
    code = submit.main(["--dry-run", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory) -> Path:
    return make_stand_in_repo(tmp_path_factory.mktemp("stand-in") / "repo")


# --- the rendered script ----------------------------------------------------------------------


def test_dry_run_prints_script_and_tasks_and_writes_nothing(capsys, tmp_path):
    code, out, err = dry_run(
        capsys,
        "--name",
        "demo",
        "--root",
        str(tmp_path / "runs"),
        "--config.optim.lr=0.01",
        "--config.slurm.tasks_per_node=2",
        "--config.slurm.time=01:00:00",
        "--config.slurm.partition=cpu",
    )
    assert code == 0, err
    run_dir = tmp_path / "runs" / "demo"
    for line in (
        "#SBATCH --job-name=demo",
        f'#SBATCH --output="{run_dir}/stdout/0.out"',
        "#SBATCH --open-mode=append",
        "#SBATCH --ntasks-per-node=2",
        "#SBATCH --time=01:00:00",
        "#SBATCH --partition=cpu",
        "#SBATCH --signal=USR1@120",
        "#SBATCH --requeue",
        "EXIT_PREEMPTED=75",
        "0) OVERRIDES=(--config.optim.lr=0.01) ;;",
        'srun --kill-on-bad-exit=1 --label bash -c "$TASK_WRAPPER" run.sh "${CMD[@]}"',
        "RETRYABLE='75 69 137'",
        'scontrol requeue "$SLURM_JOB_ID"',
        'export PYTHONPATH="$RUN_DIR/code${PYTHONPATH:+:$PYTHONPATH}"',
    ):
        assert line in out
    assert "#SBATCH --array" not in out and "slurm.time" not in out.split("#SBATCH --requeue")[1]
    assert "task 0: (no grid) -> runs/0" in out
    assert not (tmp_path / "runs").exists()


def test_script_is_valid_bash(capsys, tmp_path):
    code, out, err = dry_run(capsys, "--root", str(tmp_path))
    assert code == 0, err
    script = out.split("\n1 task(s)")[0]
    check = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert check.returncode == 0, check.stderr


def test_slurm_section_from_config_file_and_overrides(capsys, tmp_path):
    config = write(
        tmp_path / "cluster.py",
        (
            "from gssm_jax.config import default_config\n"
            "from launch.slurm_config import slurm_section\n\n"
            "def get_config():\n"
            "    c = default_config()\n"
            "    with c.unlocked():\n"
            "        c.slurm = slurm_section(partition='gpu', gpus_per_node=4, tasks_per_node=4,\n"
            "                                extra_lines=['#SBATCH --exclusive'])\n"
            "    return c\n"
        ),
    )
    code, out, err = dry_run(
        capsys,
        "--config",
        str(config),
        "--root",
        str(tmp_path / "r"),
        "--name",
        "n",
        "--config.slurm.nodes=2",
        "--config.slurm.mem=64G",
    )
    assert code == 0, err
    for line in (
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --partition=gpu",
        "#SBATCH --mem=64G",
        "#SBATCH --exclusive",
        "NUM_PROCESSES=8",
        f"CONFIG={tmp_path}/r/n/code/configs/external/cluster.py",
    ):
        assert line in out
    assert "--config.slurm" not in out


@pytest.mark.parametrize(
    ("flag", "named"),
    [
        ("--config.slurm.partition=a b", "slurm.partition='a b'"),
        ('--config.slurm.partition=x"#', "slurm.partition"),
        ("--config.slurm.mem=lots", "slurm.mem='lots'"),
        ("--config.slurm.time=1h", "slurm.time='1h'"),
        ("--config.slurm.nodes=0", "slurm.nodes=0"),
        ("--config.slurm.nodes=two", "slurm.nodes='two'"),
        ("--config.slurm.gpus=1", "slurm.gpus"),
        ("--config.slurm.extra_lines=['--exclusive']", "slurm.extra_lines='--exclusive'"),
    ],
)
def test_bad_slurm_values_are_named(capsys, tmp_path, flag, named):
    code, _, err = dry_run(capsys, "--root", str(tmp_path), flag)
    assert code == 2
    assert named in err


def test_slurm_config_defaults_and_options():
    slurm = slurm_config.slurm_config(None, {})
    assert slurm == slurm_config.SlurmConfig()
    assert slurm_config.sbatch_options(slurm) == [
        "--nodes=1",
        "--ntasks-per-node=1",
        "--cpus-per-task=1",
        "--signal=USR1@120",
    ]


# --- grids ----------------------------------------------------------------------------------


def test_grid_is_the_cartesian_product_in_key_order(tmp_path):
    path = write(
        tmp_path / "g.py",
        "def get_grid():\n    return {'optim': {'lr': [0.1, 0.2]}, 'seed': (0, 1, 2)}\n",
    )
    grid = grid_lib.load_grid(path)
    assert grid == {"optim.lr": [0.1, 0.2], "seed": [0, 1, 2]}
    points = grid_lib.expand_grid(grid)
    assert len(points) == 6
    assert points[0] == {"optim.lr": 0.1, "seed": 0} and points[1] == {"optim.lr": 0.1, "seed": 1}
    assert points[-1] == {"optim.lr": 0.2, "seed": 2}


def test_grid_becomes_a_job_array(capsys, tmp_path):
    grid = write(
        tmp_path / "g.py",
        "def get_grid():\n"
        "    return {'optim.lr': [0.1, 0.2], 'model.weight_tying': [True, False]}\n",
    )
    code, out, err = dry_run(
        capsys,
        "--root",
        str(tmp_path),
        "--name",
        "s",
        "--grid",
        str(grid),
        "--config.slurm.max_parallel_tasks=2",
    )
    assert code == 0, err
    assert "#SBATCH --array=0-3%2" in out
    assert f'#SBATCH --output="{tmp_path}/s/stdout/%a.out"' in out
    assert "3) OVERRIDES=(--config.optim.lr=0.2 --config.model.weight_tying=False) ;;" in out
    assert "task 2: optim.lr=0.2 model.weight_tying=True -> runs/2" in out


@pytest.mark.parametrize(
    ("grid", "named"),
    [
        (
            "{'optim.lr': [0.1], 'optim.no_such_key': [1]}",
            "grid key optim.no_such_key: not a field",
        ),
        ("{'nope': {'deeper': [1]}}", "grid key nope.deeper: not a field"),
        ("{'slurm.nodes': [1, 2]}", "grid key slurm.nodes"),
        ("{'optim.lr': 0.1}", "grid key optim.lr: values must be a list"),
        ("{'optim.lr': []}", "grid key optim.lr: the list of values is empty"),
        ("{'data.alpha_x': [None]}", "task 0"),
        ("{'optim.steps': [1]}", "optim.warmup"),
    ],
)
def test_bad_grids_are_named_before_anything_is_written(capsys, tmp_path, grid, named):
    path = write(tmp_path / "g.py", f"def get_grid():\n    return {grid}\n")
    code = submit.main(["--root", str(tmp_path / "runs"), "--grid", str(path)])
    assert code == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_grid_key_also_overridden_is_an_error(capsys, tmp_path):
    path = write(tmp_path / "g.py", "def get_grid():\n    return {'optim.lr': [0.1]}\n")
    code, _, err = dry_run(
        capsys, "--root", str(tmp_path), "--grid", str(path), "--config.optim.lr=0.3"
    )
    assert code == 2 and "grid key optim.lr: also set by --config.optim.lr" in err


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--config.optim.no_such=1"], "config key optim.no_such"),
        (["--config.optim.steps=many"], "--config.optim.steps=many"),
        (["--bogus"], "'--bogus'"),
        (["--config", "configs/missing.py"], "configs/missing.py"),
    ],
)
def test_bad_arguments_are_named(capsys, tmp_path, args, named):
    code, _, err = dry_run(capsys, "--root", str(tmp_path), *args)
    assert code == 2
    assert named in err


# --- run directories and names -----------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "",
        "../up",
        "a//b",
        ".hidden",
        "a/./b",
        "line\nbreak",
        "per%cent",
        'quo"te',
        "back\\slash",
        "hash#tag",
    ],
)
def test_names_that_cannot_be_run_directories(capsys, tmp_path, name):
    code, _, err = dry_run(capsys, "--root", str(tmp_path), "--name", name)
    assert code == 2 and "error:" in err


@pytest.mark.parametrize("dry", [True, False])
def test_a_root_that_is_a_file_is_one_line_before_anything_is_written(capsys, tmp_path, dry):
    """Issue 24: a FileExistsError traceback, after the checks."""
    afile = write(tmp_path / "afile", "not a folder\n")
    for root, named in ((afile, "is a file"), (afile / "runs", f"lies under {afile}")):
        code = submit.main([*(["--dry-run"] if dry else []), "--root", str(root), "--name", "x"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, err
        assert err.startswith(f"error: --root '{root}' {named}") and "not a directory" in err
    assert afile.read_text() == "not a folder\n" and sorted(tmp_path.iterdir()) == [afile]


def test_existing_run_dir_needs_overwrite(capsys, stand_in, tmp_path):
    root = tmp_path / "runs"
    first = run_submit(stand_in, "--local", "--name", "r", "--root", str(root), *SHORT)
    assert first.returncode == 0, first.stderr
    (root / "r" / "keep").write_text("old")
    again = run_submit(stand_in, "--local", "--name", "r", "--root", str(root), *SHORT)
    assert again.returncode == 2 and "exists" in again.stderr and "--overwrite" in again.stderr
    assert (root / "r" / "keep").exists()
    code, _, err = dry_run(capsys, "--name", "r", "--root", str(root))
    assert code == 2 and "exists" in err
    over = run_submit(
        stand_in, "--local", "--overwrite", "--name", "r", "--root", str(root), *SHORT
    )
    assert over.returncode == 0, over.stderr
    assert not (root / "r" / "keep").exists()
    assert [p.name for p in root.iterdir()] == ["r"]


def test_overwrite_refuses_a_folder_it_did_not_make(capsys, tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data.txt").write_text("keep me")
    code = submit.main(["--overwrite", "--name", "precious", "--root", str(tmp_path)])
    assert code == 2 and "refusing to delete" in capsys.readouterr().err
    assert (precious / "data.txt").read_text() == "keep me"


# --- the script run on this host (--local) ------------------------------------------------------


def test_hostile_name_and_values_stay_inert(stand_in, tmp_path):
    marker = Path(f"/tmp/gssm-pwned-{uuid.uuid4().hex}")
    name = f"x; touch {marker}"
    value = f"$(touch {marker}) `touch {marker}`; touch {marker} 'q\" \\"
    out = run_submit(
        stand_in,
        "--local",
        "--name",
        name,
        "--root",
        str(tmp_path),
        *SHORT,
        f"--config.data.path={value}",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert not marker.exists()
    run_dir = tmp_path / name
    task = json.loads((run_dir / "tasks" / "0.json").read_text())
    assert task["config"]["data"]["path"] == value
    assert "done at step 40" in (run_dir / "stdout" / "0.out").read_text()


def test_local_run_uses_the_code_snapshot_and_joins_processes(stand_in, tmp_path):
    out = run_submit(
        stand_in,
        "--local",
        "--name",
        "two",
        "--root",
        str(tmp_path),
        *SHORT,
        "--config.slurm.tasks_per_node=2",
    )
    assert out.returncode == 0, out.stderr
    run_dir = tmp_path / "two"
    log = (run_dir / "stdout" / "0.out").read_text()
    snapshot = run_dir / "code" / "gssm_jax" / "main.py"
    for i in range(2):
        assert f"{i}: stand-in process_index={i} process_count=2 file={snapshot}" in log
    record = json.loads((run_dir / "submit.json").read_text())
    assert record["mode"] == "local" and record["slurm"]["tasks_per_node"] == 2
    for part in ("gssm_jax", "configs", "launch"):
        assert (run_dir / "code" / part).is_dir()


def _start_local(stand_in: Path, root: Path, name: str) -> subprocess.Popen:
    env = dict(os.environ, STAND_IN_STEP_SECONDS="0.02")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "launch.submit",
            "--local",
            "--name",
            name,
            "--root",
            str(root),
            "--config.optim.steps=150",
            "--config.log.period=5",
            "--config.slurm.tasks_per_node=2",
        ],
        cwd=stand_in,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for_progress(run_dir: Path, timeout: float = 60) -> None:
    train = run_dir / "runs" / "0" / "metrics" / "train.jsonl"
    deadline = time.monotonic() + timeout
    while not (train.exists() and train.read_text().strip()):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _signal_local_run(stand_in: Path, root: Path, name: str, sig: int) -> tuple[int, str]:
    """Starts a local run, sends `sig` once it has logged progress; returns (returncode, output)."""
    proc = _start_local(stand_in, root, name)
    _wait_for_progress(root / name)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    return proc.returncode, out


def test_local_preemption_restarts_the_task_and_resumes(stand_in, tmp_path):
    returncode, out = _signal_local_run(stand_in, tmp_path, "pre", signal.SIGUSR1)
    assert returncode == 0, out
    assert "exiting with code 75" in out and "restarting it as Slurm would requeue it" in out
    assert "resumed from" in out and "done at step 150" in out


def test_local_stop_then_resume_with_bash_run_sh(stand_in, tmp_path):
    returncode, out = _signal_local_run(stand_in, tmp_path, "stop", signal.SIGTERM)
    assert returncode == 75, out
    assert "stopped; resume with: bash" in out and "restarting" not in out
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    again = subprocess.run(
        ["bash", str(tmp_path / "stop" / "run.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resumed from" in again.stdout and "done at step 150" in again.stdout


# --- submission through sbatch ------------------------------------------------------------------


def _fake_sbatch(folder: Path, body: str) -> dict[str, str]:
    folder.mkdir()
    write(folder / "sbatch", f"#!/bin/bash\n{body}\n").chmod(0o755)
    return dict(os.environ, PATH=f"{folder}{os.pathsep}{os.environ['PATH']}")


def test_sbatch_gets_the_script_and_the_job_id_is_recorded(stand_in, tmp_path):
    env = _fake_sbatch(tmp_path / "bin", f'echo "$@" > {tmp_path}/args; echo "4242;cluster"')
    out = run_submit(stand_in, "--name", "s", "--root", str(tmp_path / "runs"), env=env)
    assert out.returncode == 0, out.stderr
    assert "submitted job 4242" in out.stdout
    run_dir = tmp_path / "runs" / "s"
    assert (tmp_path / "args").read_text().split() == ["--parsable", str(run_dir / "run.sh")]
    assert json.loads((run_dir / "submit.json").read_text())["job_id"] == "4242"


def test_failed_sbatch_leaves_no_run_directory(stand_in, tmp_path):
    env = _fake_sbatch(tmp_path / "bin", 'echo "sbatch: error: invalid partition" >&2; exit 1')
    out = run_submit(stand_in, "--name", "s", "--root", str(tmp_path / "runs"), env=env)
    assert out.returncode == 2 and "invalid partition" in out.stderr
    assert list((tmp_path / "runs").iterdir()) == []


def test_repo_root_is_the_checkout():
    assert submit.REPO_ROOT == REPO


def test_slurm_section_schema_matches_the_launcher():
    section = slurm_config.slurm_section(time="01:00:00")
    assert set(section) == set(slurm_config.FIELDS)
    assert slurm_config.slurm_config(section, {}).time == "01:00:00"
    from gssm_jax.config import default_config

    config = default_config()
    if "slurm" in config:  # when the default config carries the section, it must be this schema
        assert set(config.slurm) == set(slurm_config.FIELDS)
        slurm_config.slurm_config(config.slurm, {})


# --- faults of one process: the retry and the record (issue 24, fault 3) ------------------------


def _process_pid(run_dir: Path, process_id: int, timeout: float = 60) -> int:
    """The pid of the stand-in main started with --config.distributed.process_id=`process_id`."""
    wanted = [str(run_dir / "runs" / "0").encode(), f"process_id={process_id}".encode()]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                cmdline = Path("/proc", entry, "cmdline").read_bytes()
            except OSError:
                continue
            if b"gssm_jax.main" in cmdline and all(w in cmdline for w in wanted):
                return int(entry)
        time.sleep(0.05)
    raise AssertionError(f"no process {process_id} of {run_dir}")


def test_a_killed_process_is_recorded_and_its_task_restarted(stand_in, tmp_path):
    proc = _start_local(stand_in, tmp_path, "killed")
    run_dir = tmp_path / "killed"
    _wait_for_progress(run_dir)
    os.kill(_process_pid(run_dir, 1), signal.SIGKILL)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "task 0: exit 137, which resumes (see stdout/0.exits); restarting it as Slurm" in out
    assert "resumed from" in out and "done at step 150" in out
    exits = (run_dir / "stdout" / "0.exits").read_text().splitlines()
    assert any(
        line.endswith("task 0 process 1 on " + os.uname().nodename + ": exit 137") for line in exits
    ), exits
    assert exits[-2:] == [line for line in exits[-2:] if line.endswith(": exit 0")], (
        exits
    )  # the second attempt: both processes complete


def test_the_slurm_task_wrapper_records_its_exit_code(capsys, tmp_path):
    code, out, err = dry_run(capsys, "--root", str(tmp_path))
    assert code == 0, err
    wrapper = out.split("TASK_WRAPPER='", 1)[1].split("'\n", 1)[0]
    exits = tmp_path / "0.exits"
    env = dict(os.environ, GSSM_TASK="3", EXITS=str(exits), SLURM_PROCID="1")
    for command, rc in ((["bash", "-c", "kill -9 $$"], 137), (["bash", "-c", "exit 69"], 69)):
        done = subprocess.run(["bash", "-c", wrapper, "run.sh", *command], env=env, timeout=30)
        assert done.returncode == rc
    host = os.uname().nodename
    lines = exits.read_text().splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == [
        f"task 3 process 1 on {host}: exit 137",
        f"task 3 process 1 on {host}: exit 69",
    ]
