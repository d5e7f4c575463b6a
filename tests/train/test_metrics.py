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


STEPS = [
    "--config.optim.steps=14",
    "--config.optim.warmup=2",
    "--config.log.period=2",
    "--config.eval.period=10",
    "--config.checkpoint.period=10",
]


def test_a_torn_tail_after_a_kill_is_dropped_on_resume(tmp_path):
    workdir = tmp_path / "run"
    code, out, err = run_cmd(main_cmd(workdir, *STEPS), tmp_path)
    assert code == 0, out + err
    train = workdir / "metrics" / "train.jsonl"
    uninterrupted = read_jsonl(train)
    # what kill -9 between step 14's log line and its checkpoint leaves, mid-way through a line
    shutil.rmtree(workdir / "checkpoints" / "14")
    (workdir / "final.json").unlink()
    with open(train, "a") as f:
        f.write('{"step": 16, "loss": 0.93, "entro')
    code, out, err = run_cmd(main_cmd(workdir, *STEPS), tmp_path)
    assert code == 0, out + err
    assert f"dropped 1 torn line(s) of {train} (a write cut short)" in out
    assert f"resumed from {workdir}/checkpoints/10" in out
    resumed = read_jsonl(train)  # every line parses
    assert [r["step"] for r in resumed] == [r["step"] for r in uninterrupted]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in uninterrupted]
    assert train.read_text().endswith("\n")
