"""Ctrl-C (a real SIGINT) in `evaluate` and `generate`: one line on stderr and exit 130, wherever
it lands: while JAX loads, or in the middle of the work."""

from __future__ import annotations

import signal
import sys
import time

from conftest import start_cmd

from gssm_jax.inference.interrupt import EXIT_INTERRUPTED, MESSAGE


def interrupt_when(cmd: list[str], after_s: float = 0.0, after_line: str = "") -> tuple:
    """Starts `cmd`, sends SIGINT `after_s` seconds in or once a line starts with `after_line`
    (stdout and stderr), waits for it: (exit code, every line)."""
    proc = start_cmd(cmd)
    assert proc.stdout is not None
    lines: list[str] = []
    if after_line:
        while not any(ln.startswith(after_line) for ln in lines):
            line = proc.stdout.readline()
            assert line, lines  # it ended before the line came
            lines.append(line.rstrip("\n"))
    else:
        time.sleep(after_s)
    assert proc.poll() is None, lines
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    return proc.returncode, lines + out.splitlines()


def assert_one_line(code: int, lines: list[str]) -> None:
    assert code == EXIT_INTERRUPTED, (code, lines)
    assert lines == [MESSAGE], lines


def test_ctrl_c_in_evaluate_while_it_starts_and_while_it_works(run_copy):
    cmd = [sys.executable, "-m", "gssm_jax.evaluate", f"--workdir={run_copy}", "--all"]
    code, lines = interrupt_when(cmd, after_s=1.0)  # importing JAX, or compiling
    assert_one_line(code, lines)
    code, lines = interrupt_when([*cmd, "--batches=128"], after_line="eval step")
    assert_one_line(code, [ln for ln in lines if not ln.startswith("eval step")])


def test_ctrl_c_in_the_middle_of_a_long_generation(run_copy):
    cmd = [sys.executable, "-m", "gssm_jax.generate", f"--workdir={run_copy}", "--num=2"]
    cmd += ["--max-new-tokens=20000", f"--out={run_copy / 'long.jsonl'}"]
    code, lines = interrupt_when(cmd, after_line="generating:")
    kept = [ln for ln in lines if not ln.startswith(("generating:", "warning:"))]
    assert_one_line(code, kept)
    assert not (run_copy / "long.jsonl").exists()
    assert not list(run_copy.glob("long.jsonl.tmp-*"))
