"""Metric files across a kill (issue 24, fault 4): a torn last line and rows past the restored
checkpoint are dropped on resume, so each step is recorded once, with the uninterrupted numbers."""

from __future__ import annotations

import json
import shutil

from conftest import main_cmd, read_jsonl, run_cmd

from gssm_jax.train.metrics import truncate_after


def test_truncate_after_drops_torn_lines_and_later_steps(tmp_path):
    mdir = tmp_path / "metrics"
    mdir.mkdir()
    rows = [json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in (2, 4, 6)]
    (mdir / "train.jsonl").write_text("".join(rows) + '{"step": 8, "lo')
    (mdir / "eval.jsonl").write_text(rows[0] + "not json\n" + rows[1])
    notes = truncate_after(str(tmp_path), 4)
    assert (mdir / "train.jsonl").read_text() == "".join(rows[:2])
    assert (mdir / "eval.jsonl").read_text() == "".join(rows[:2])
    assert notes == [
        f"dropped 1 torn line(s) of {mdir / 'eval.jsonl'} (a write cut short)",
        f"dropped 1 torn line(s) of {mdir / 'train.jsonl'} (a write cut short)",
    ]
    assert truncate_after(str(tmp_path), 4) == []  # nothing left to drop


def test_a_torn_tail_after_a_kill_is_dropped_on_resume(tiny_run, tmp_path):
    """The shared 20-step run, as kill -9 between step 20's log line and its checkpoint leaves it,
    plus half a line; the resume drops both and logs the uninterrupted numbers once."""
    workdir = tmp_path / "run"
    shutil.copytree(tiny_run, workdir)
    train = workdir / "metrics" / "train.jsonl"
    uninterrupted = read_jsonl(train)
    shutil.rmtree(workdir / "checkpoints" / "20")
    (workdir / "final.json").unlink()
    with open(train, "a") as f:
        f.write('{"step": 22, "loss": 0.93, "entro')
    steps = ["--config.optim.steps=20", "--config.optim.warmup=2", "--config.log.period=10"]
    steps += ["--config.eval.period=10", "--config.checkpoint.period=10"]  # tiny_run's
    code, out, err = run_cmd(main_cmd(workdir, *steps), tmp_path)
    assert code == 0, out + err
    assert f"dropped 1 torn line(s) of {train} (a write cut short)" in out
    assert f"resumed from {workdir}/checkpoints/10" in out
    resumed = read_jsonl(train)  # every line parses
    assert [r["step"] for r in resumed] == [r["step"] for r in uninterrupted] == [10, 20]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in uninterrupted]
    assert train.read_text().endswith("\n")
