"""A full disk (issue 24, faults 2 and 5), for real on a small tmpfs: a failed checkpoint or
metrics write is one line naming the path and the cause with EXIT_WRITE_FAILED, the previous
checkpoint intact and the unfinished save removed; once there is space the same command resumes
with the uninterrupted numbers. Mounting needs root (as in CI); elsewhere these tests skip."""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

import pytest
from conftest import main_cmd, read_jsonl, run_cmd

from gssm_jax.runtime.exitcodes import EXIT_WRITE_FAILED
from gssm_jax.runtime.writes import WriteError, cause_of
from gssm_jax.train.metrics import MetricsWriter

STEPS = [
    "--config.optim.steps=20",
    "--config.optim.warmup=2",
    "--config.log.period=10",
    "--config.eval.period=10",
    "--config.checkpoint.period=10",
]


def _mount(folder: Path, options: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], check=True)


@pytest.fixture
def tmpfs(tmp_path):
    """An empty 320 KB tmpfs: room for the TINY run's files and one checkpoint, not two."""
    folder = tmp_path / "disk"
    folder.mkdir()
    try:
        _mount(folder, "size=320k")
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {e}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def test_cause_of_names_the_errno_or_orbax_text():
    assert cause_of(OSError(errno.ENOSPC, "x")) == "no space left on device (ENOSPC)"
    assert cause_of(OSError(errno.EDQUOT, "x")) == "disk quota exceeded (EDQUOT)"
    orbax = ValueError("RESOURCE_EXHAUSTED: Failed writing: [os_error_code='28']")
    assert cause_of(orbax) == "no space left on device (ENOSPC)"
    assert cause_of(RuntimeError("wrapped")) is None
    try:
        try:
            raise OSError(errno.EROFS, "Read-only file system")
        except OSError as inner:
            raise RuntimeError("an Orbax thread failed") from inner
    except RuntimeError as outer:
        assert cause_of(outer) == "read-only file system (EROFS)"


def test_a_full_disk_is_one_line_and_the_same_command_resumes(tmpfs):
    workdir = tmpfs / "run"
    cmd = main_cmd(workdir, *STEPS)
    code, out, err = run_cmd(cmd, tmpfs.parent)
    ckpt = workdir / "checkpoints"
    assert code == EXIT_WRITE_FAILED, out + err
    assert err.splitlines() == [
        f"gssm_jax: cannot write checkpoint {ckpt}/20: no space left on device (ENOSPC) at step "
        "20; the last good checkpoint is step 10 (run the same command again to resume once the "
        "disk can take it)"
    ], err
    assert sorted(p.name for p in ckpt.iterdir()) == ["10"]  # no *.orbax-checkpoint-tmp*
    assert not (workdir / "final.json").exists()
    uninterrupted = read_jsonl(workdir / "metrics" / "train.jsonl")  # steps 10 and 20 ran
    assert [r["step"] for r in uninterrupted] == [10, 20]

    subprocess.run(["mount", "-o", "remount,size=4m", str(tmpfs)], check=True)  # space freed
    code, out, err = run_cmd(cmd, tmpfs.parent)
    assert code == 0, out + err
    assert f"resumed from {ckpt}/10" in out
    resumed = read_jsonl(workdir / "metrics" / "train.jsonl")
    assert [(r["step"], r["loss"]) for r in resumed] == [
        (r["step"], r["loss"]) for r in uninterrupted
    ]
    assert sorted(p.name for p in ckpt.iterdir()) == ["10", "20"]


def _fill(folder: Path) -> None:
    """Writes a ballast file until the file system is full."""
    with open(folder / "ballast", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC


def test_metrics_writes_on_a_full_or_read_only_disk_are_write_errors(tmpfs):
    writer = MetricsWriter(str(tmpfs / "run"), enabled=True)
    writer.write("train", {"step": 1, "loss": 1.0})
    _fill(tmpfs)
    with pytest.raises(WriteError) as caught:
        for step in range(2, 200):  # until the page the first records share is full
            writer.write("train", {"step": step, "loss": 0.5, "padding": "x" * 200})
    assert caught.value.cause == "no space left on device (ENOSPC)"
    assert caught.value.path in (str(tmpfs / "run" / "metrics" / "train.jsonl"), writer._tb.path)
    writer.close()

    subprocess.run(["umount", "-l", str(tmpfs)], check=True)
    _mount(tmpfs, "size=320k,ro")
    with pytest.raises(WriteError) as caught:
        MetricsWriter(str(tmpfs / "run"), enabled=True)
    assert caught.value.cause == "read-only file system (EROFS)"
    assert caught.value.path == str(tmpfs / "run")  # the folder the OS refused to make
