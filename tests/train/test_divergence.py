"""A diverging run (issue 24, fault 1): it stops with EXIT_DIVERGED and one line, keeps only finite
checkpoints, says `diverged` in final.json and the report, and refuses a plain resume."""

from __future__ import annotations

import json
import re

from conftest import main_cmd, read_jsonl, run_cmd

from gssm_jax.reporting.runs import status_of
from gssm_jax.runtime.exitcodes import EXIT_DIVERGED

# lr 1e4 without clipping: the TINY model's gradients are nan from step 5 on.
DIVERGING = [
    "--config.optim.lr=1e4",
    "--config.optim.clip_norm=0",
    "--config.optim.steps=10",
    "--config.optim.warmup=1",
    "--config.optim.nonfinite_patience=3",
    "--config.log.period=1",
    "--config.eval.period=10",
    "--config.checkpoint.period=5",
]
LINE = re.compile(
    r"gssm_jax: diverged at step (\d+) \(grad_norm nan, loss [^;]+; 3 consecutive non-finite "
    r"steps\); the last good checkpoint is step (\d+)"
)


def test_a_diverging_run_stops_and_its_resume_is_refused(tmp_path):
    workdir = tmp_path / "run"
    code, out, err = run_cmd(main_cmd(workdir, *DIVERGING), tmp_path)
    assert code == EXIT_DIVERGED, out + err
    assert len(err.splitlines()) == 1, err
    match = LINE.fullmatch(err.strip())
    assert match, err
    stopped, good = int(match[1]), int(match[2])
    assert good < stopped
    steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir())
    assert steps[-1] == good
    final = json.loads((workdir / "final.json").read_text())
    assert final["status"] == "diverged" and final["diverged"]["last_checkpoint"] == good
    assert status_of(final, [], True)[0] == "diverged"
    # the streak's rows are in the metrics, their grad_norm written as null
    rows = {r["step"]: r for r in read_jsonl(workdir / "metrics" / "train.jsonl")}
    assert rows[stopped]["grad_norm"] is None and max(rows) == stopped

    code, out, err = run_cmd(main_cmd(workdir, *DIVERGING), tmp_path)
    assert code == EXIT_DIVERGED, out + err
    assert err.strip() == (
        f"gssm_jax: {workdir} diverged at step {stopped} ({final['diverged']['why']}; its last "
        f"good checkpoint is step {good}); use a new --workdir, or change optim (e.g. "
        "--config.optim.lr) and pass --allow-config-change to resume from there"
    ), err
    assert out == ""

    # --allow-config-change resumes from the good checkpoint (here a smaller rate cannot save the
    # model, whose weights lr 1e4 already ruined: it diverges again), each step recorded once
    gentle = [*DIVERGING, "--config.optim.lr=1e-3", "--allow-config-change"]
    code, out, err = run_cmd(main_cmd(workdir, *gentle), tmp_path)
    assert f"resumed from {workdir}/checkpoints/{good}" in out, out + err
    assert code == EXIT_DIVERGED and len(err.splitlines()) == 1, out + err
    steps = [r["step"] for r in read_jsonl(workdir / "metrics" / "train.jsonl")]
    assert steps == sorted(set(steps)) and steps[-1] == stopped
