"""The run directory of a submission, written whole or not at all.

    ROOT/NAME/
      code/          gssm_jax/, configs/, launch/ as submitted (the job runs with PYTHONPATH=code)
      tasks/<i>.json resolved config of task i, its grid point and its --config flags
      runs/<i>/      task i's workdir for gssm_jax.main (metrics/, checkpoints/, config.json)
      stdout/<i>.out task i's output, every attempt appended
      run.sh         the job script (sbatch or bash)
      submit.json    who submitted what, from which commit, and the Slurm job id

The directory is built under a temporary name beside its final place and renamed into it, so a
failed submission leaves nothing behind; an existing run directory is replaced only on request.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

SNAPSHOT = ("gssm_jax", "configs", "launch")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".pytest_cache")


class RunDirError(ValueError):
    """A run directory that exists, or a name that cannot be one."""


def check_name(name: str) -> None:
    """Raises RunDirError unless `name` is a relative path below the root (`a/b` nests folders;
    spaces and `;` are fine); no part may be empty or start with '.', so it cannot leave the root."""
    parts = name.split("/")
    if any(not part or part.startswith(".") for part in parts):
        raise RunDirError(
            f"--name {name!r}: must be a relative path whose parts are not empty and do not "
            "start with '.'"
        )
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise RunDirError(f"--name {name!r}: control characters are not allowed")


def is_run_dir(path: Path) -> bool:
    return (path / "run.sh").is_file() and (path / "tasks").is_dir()


def check_root(root: Path) -> None:
    """Raises RunDirError when `root` (the folder of run directories) or a folder above it is a
    file: found before anything is written."""
    for path in (root, *root.parents):
        if path.exists():
            if not path.is_dir():
                what = "is a file" if path == root else f"lies under {path}, which is a file"
                raise RunDirError(f"--root {str(root)!r} {what}, not a directory")
            return


def check_target(run_dir: Path, overwrite: bool) -> None:
    """Raises RunDirError when `run_dir` exists and may not (or cannot safely) be replaced."""
    if not run_dir.exists() and not run_dir.is_symlink():
        return
    if not overwrite:
        raise RunDirError(
            f"run directory {str(run_dir)!r} exists; pick another --name, or pass --overwrite to "
            "delete it (checkpoints included) and start over"
        )
    if run_dir.is_symlink() or not is_run_dir(run_dir):
        raise RunDirError(
            f"run directory {str(run_dir)!r} exists but was not made by launch.submit "
            "(no run.sh and tasks/): refusing to delete it, even with --overwrite"
        )


def snapshot_config(repo_root: Path, config_path: Path, code_dir: Path) -> Path:
    """The path of the config file inside `code_dir`, copying it there if it is not in SNAPSHOT."""
    config_path = config_path.resolve()
    try:
        rel = config_path.relative_to(repo_root.resolve())
    except ValueError:
        rel = None
    if rel is not None and rel.parts[0] in SNAPSHOT:
        return code_dir / rel
    return code_dir / "configs" / "external" / config_path.name


def _write_code(repo_root: Path, code_dir: Path, config_path: Path, config_in_code: Path) -> None:
    for part in SNAPSHOT:
        shutil.copytree(repo_root / part, code_dir / part, ignore=_IGNORE)
    if not config_in_code.exists():
        config_in_code.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(config_path, config_in_code)


def _replace(tmp: Path, run_dir: Path, overwrite: bool) -> None:
    """Moves `tmp` to `run_dir`; an old run directory there is deleted only after the move."""
    old = None
    if overwrite and run_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.old-", dir=run_dir.parent))
        os.rename(run_dir, old / "run")
    if run_dir.exists():
        raise RunDirError(f"run directory {str(run_dir)!r} appeared while this one was written")
    os.rename(tmp, run_dir)
    if old is not None:
        shutil.rmtree(old)


def write_run_dir(
    *,
    run_dir: Path,
    repo_root: Path,
    config_path: Path,
    config_in_code: Path,
    script: str,
    task_files: Mapping[int, str],
    submit_record: Mapping,
    overwrite: bool,
) -> None:
    """Writes the whole run directory (see the module docstring) at `run_dir`."""
    check_target(run_dir, overwrite)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.tmp-", dir=run_dir.parent))
    try:
        code_dir = tmp / "code"
        in_tmp = code_dir / config_in_code.relative_to(run_dir / "code")
        _write_code(repo_root, code_dir, config_path, in_tmp)
        for sub in ("tasks", "runs", "stdout"):
            (tmp / sub).mkdir()
        for task_id, text in task_files.items():
            (tmp / "tasks" / f"{task_id}.json").write_text(text)
            (tmp / "runs" / str(task_id)).mkdir()
        (tmp / "run.sh").write_text(script)
        (tmp / "run.sh").chmod(0o755)
        write_record(tmp, submit_record)
        _replace(tmp, run_dir, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_record(run_dir: Path, record: Mapping) -> None:
    (run_dir / "submit.json").write_text(json.dumps(dict(record), indent=2) + "\n")


def remove_new_run_dir(run_dir: Path, task_ids: Sequence[int]) -> None:
    """Deletes a run directory this submission just wrote, when its job never started."""
    if is_run_dir(run_dir) and all((run_dir / "runs" / str(i)).is_dir() for i in task_ids):
        shutil.rmtree(run_dir)
