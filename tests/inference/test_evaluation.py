"""`python -m gssm_jax.evaluate`: the training loop's eval reproduced, kl_t, --all, data sets, errors,
and a run directory left byte-identical."""

from __future__ import annotations

import functools
import io
import json
import sys

import numpy as np
from conftest import one_line_error, read_jsonl, run_cmd, tree_digest

from gssm_jax import evaluate
from gssm_jax.config import four_graph
from gssm_jax.data import set_writer
from gssm_jax.gssm.graph import parse_graph
from gssm_jax.gssm.kernels import draw_kernels


def write_set(path, graph_spec: dict, n: int = 16, seq_len: int = 32) -> str:
    graph = parse_graph(graph_spec)
    tables = draw_kernels(graph, 0)
    request = set_writer.set_request(graph, tables, 0, 5, 2**31, n, seq_len)
    progress = set_writer.Progress(n, seq_len, "test", io.StringIO())
    set_writer.write_set(
        str(path), request, graph, tables, batch_size=n, mc_draws=4, progress=progress, label="t"
    )
    return str(path)


def test_cli_all_reproduces_the_loop_eval_and_leaves_the_run_unchanged(run_copy):
    before = tree_digest(run_copy)
    code, out, err = run_cmd(
        [sys.executable, "-m", "gssm_jax.evaluate", f"--workdir={run_copy}", "--all"]
    )
    assert code == 0, out + err
    assert tree_digest(run_copy) == before
    assert sorted(p.name for p in (run_copy / "evals").iterdir()) == ["10.json", "20.json"]
    lines = out.strip().splitlines()
    assert [line.split(" | ")[0] for line in lines] == ["eval step 10", "eval step 20"]
    loop = {r["step"]: r for r in read_jsonl(run_copy / "metrics" / "eval.jsonl")}
    for step in (10, 20):
        rec = json.loads((run_copy / "evals" / f"{step}.json").read_text())
        assert rec["step"] == step and rec["batches"] == 1 and rec["sequences"] == 8
        for key in ("loss", "entropy", "kl_gap"):
            assert abs(rec[key] - loop[step][key]) < 1e-5, (step, key, rec[key], loop[step][key])
        assert len(rec["kl_t"]) == 31  # positions 1..T-1 of seq_len 32
        assert abs(np.mean(rec["kl_t"]) - rec["kl_gap"]) < 1e-9


def test_step_batches_and_data_path(run_copy, tmp_path, capsys):
    spec = {k: dict(v) for k, v in four_graph().items()}
    path = write_set(tmp_path / "sets" / "test", spec)
    code = evaluate.main([f"--workdir={run_copy}", "--step=10", f"--data={path}", "--batches=2"])
    assert code == 0, capsys.readouterr()
    rec = json.loads((run_copy / "evals" / "10.json").read_text())
    assert rec["data"] == path and rec["sequences"] == 16
    stored = np.load(f"{path}/entropy.npy")
    assert abs(rec["entropy"] - stored.mean()) < 1e-5
    assert "wrote " + str(run_copy / "evals" / "10.json") in capsys.readouterr().out


_error = functools.partial(one_line_error, evaluate.main)


def test_errors_are_one_line_exit_2(run_copy, tmp_path, capsys):
    before = tree_digest(run_copy)
    assert "no checkpoint at --step 7 (kept: 10, 20)" in _error(
        [f"--workdir={run_copy}", "--step=7"], capsys
    )
    assert "no config.json" in _error([f"--workdir={tmp_path}"], capsys)
    afile = tmp_path / "afile"
    afile.write_text("")
    assert f"--workdir {afile}: is a file, not a directory" in _error(
        [f"--workdir={afile}"], capsys
    )
    assert "--batches" in _error([f"--workdir={run_copy}", "--batches=0"], capsys)
    assert "not allowed with" in _error([f"--workdir={run_copy}", "--all", "--step=10"], capsys)
    other = {k: dict(v) for k, v in four_graph(alpha_x=0.3).items()}
    path = write_set(tmp_path / "other" / "test", other)
    err = _error([f"--workdir={run_copy}", f"--data={path}"], capsys)
    assert "data.graph X.alpha=0.05 does not match" in err
    # A checkpoint written by another model: the config now says emb_dim 16.
    config = json.loads((run_copy / "config.json").read_text())
    config["model"]["emb_dim"] = 16
    (run_copy / "config.json").write_text(json.dumps(config))
    err = _error([f"--workdir={run_copy}", "--all"], capsys)
    assert "written by a different model config" in err or "but the config needs" in err
    assert not (run_copy / "evals").exists()
    assert {k: v for k, v in tree_digest(run_copy).items() if k != "config.json"} == {
        k: v for k, v in before.items() if k != "config.json"
    }
