"""launch.study: the cells, resuming (a finished cell is skipped), the checks, and `--quick` for
real (one width-16 transformer cell, about 30 s, checked against the committed scaling page)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from configs.study import cells as cells_lib
from launch import study

REPO = Path(__file__).resolve().parents[2]


def test_cells_are_unique_shared_and_seeded():
    every = cells_lib.cells("all")
    names = [c["name"] for c in every]
    assert len(names) == len(set(names)) == 108
    e1, scaling = cells_lib.cells("experiment1"), cells_lib.cells("scaling")
    shared = {c["name"] for c in e1} & {c["name"] for c in scaling}
    assert shared == {f"e1-{s}-transformer-w64-g{g}" for s in cells_lib.SETUPS for g in (0, 1, 2)}
    assert {c["overrides"]["data.graph_seed"] for c in every} == {0, 1, 2}


def test_a_finished_cell_is_skipped_and_an_unfinished_one_resumed(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(study.subprocess, "call", lambda cmd, **kw: calls.append(cmd) or 0)
    cell = cells_lib.cell(f"{cells_lib.E1}:small_x", "hawk", 0)
    done = tmp_path / "cells" / cell["name"]
    (done / "evals").mkdir(parents=True)
    (done / "final.json").write_text("{}")
    (done / "evals" / "300.json").write_text("{}")
    assert study.run_cell(cell, tmp_path, print)["status"] == "done before" and not calls
    (done / "final.json").unlink()
    assert study.run_cell(cell, tmp_path, print)["status"] == "done"
    assert calls[0][1:4] == ["-m", "gssm_jax.main", "--config"]
    assert "--config.model.family=hawk" in calls[0]


def test_check_compares_with_the_committed_rows(tmp_path, monkeypatch, capsys):
    cell = cells_lib.cell(f"{cells_lib.E1}:small_x", "transformer", 0, 16)
    rows = {f"{cell['name'][:-1]}{g}": {"eval_kl_gap": str(0.5 + 0.01 * g)} for g in (0, 1, 2)}
    monkeypatch.setattr(study, "committed_rows", lambda s: rows)
    final = tmp_path / "cells" / cell["name"] / "final.json"
    final.parent.mkdir(parents=True)
    final.write_text(json.dumps({"eval": {"kl_gap": 0.5104}}))
    assert study.check("scaling", [cell], tmp_path, spread=True, say=print)  # in [0.499, 0.521]
    assert not study.check("scaling", [cell], tmp_path, spread=False, say=print)  # 0.5 +- 1e-3
    final.write_text(json.dumps({"eval": {"kl_gap": 0.53}}))
    assert not study.check("scaling", [cell], tmp_path, spread=True, say=print)
    assert "FAILED" in capsys.readouterr().out


@pytest.mark.skipif(
    not (REPO / "docs/results/study-scaling/runs.csv").exists(), reason="no committed study"
)
def test_quick_lands_within_the_committed_seed_spread(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "launch.study", "scaling", "--quick", "--root", str(tmp_path)]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert ": ok" in done.stdout
