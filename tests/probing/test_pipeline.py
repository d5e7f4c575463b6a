"""`python -m gssm_jax.probe` on a tiny trained run: outputs, options and user errors (exit 2)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from conftest import ROOT, main_cmd, run_cmd

from gssm_jax import probe
from gssm_jax.config import default_config
from gssm_jax.inference.rundir import open_run
from gssm_jax.runtime.exitcodes import EXIT_BAD_CONFIG

STEPS = [
    "--config.optim.steps=20",
    "--config.optim.warmup=2",
    "--config.log.period=10",
    "--config.eval.period=20",
    "--config.checkpoint.period=10",
]
SMALL = ["--sequences=48", "--steps=60", "--batch=24"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A 20-step TINY run (checkpoints at 10 and 20)."""
    workdir = tmp_path_factory.mktemp("probe") / "run"
    code, out, err = run_cmd(main_cmd(workdir, *STEPS))
    assert code == 0, out + err
    return workdir


def test_probe_writes_json_and_heatmap(run_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert probe.main(["--workdir", str(run_dir), "--out", str(out), *SMALL]) == 0
    result = json.loads((out / "20.json").read_text())
    assert (out / "20.png").stat().st_size > 1000
    assert result["step"] == 20
    assert result["layers"] == ["embed", "block_0"]
    assert result["nodes"] == ["Z1", "Z2", "Z3", "Z4"]
    assert result["train_sequences"] == 36 and result["test_sequences"] == 12
    assert result["positions"] == list(range(1, 31))  # seq_len 32: the model reads 0..30
    assert result["test_rows"] == 12 * 30
    assert len(result["results"]) == 2 * 4
    for r in result["results"]:
        assert 0 <= r["chance"] <= 1 and 0 < r["ceiling"] <= 1 and 0 <= r["accuracy"] <= 1
        assert r["of_ceiling"] == pytest.approx(r["accuracy"] / r["ceiling"])
        if r["ceiling"] > r["chance"]:
            headroom = (r["accuracy"] - r["chance"]) / (r["ceiling"] - r["chance"])
            assert r["of_headroom"] == pytest.approx(headroom)
        assert r["xent_posterior"] >= result["posterior_entropy"][r["node"]] - 1e-5
    for node in result["nodes"]:
        assert result["ceiling"][node] >= result["chance"][node] - 0.05
        assert result["best"][node]["layer"] in result["layers"]
    printed = capsys.readouterr().out
    assert "probe accuracy / Bayes ceiling at step 20" in printed
    assert f"wrote {out / '20.json'}" in printed


def test_probe_options(run_dir, tmp_path):
    out = tmp_path / "out"
    args = ["--workdir", str(run_dir), "--out", str(out), *SMALL]
    assert probe.main([*args, "--step=10", "--parts", "--positions", "3", "5:8"]) == 0
    result = json.loads((out / "10.json").read_text())
    assert result["step"] == 10
    assert result["layers"] == ["embed", "block_0/attn", "block_0/mlp", "block_0"]
    assert result["positions"] == [3, 5, 6, 7]
    assert probe.main([*args, "--init", "--layers", "block_0"]) == 0
    result = json.loads((out / "init.json").read_text())
    assert result["step"] == "init" and result["layers"] == ["block_0"]


def test_probe_default_out_is_the_run_dir(run_dir):
    assert probe.main(["--workdir", str(run_dir), *SMALL, "--layers", "embed"]) == 0
    assert (run_dir / "probe" / "20.json").exists() and (run_dir / "probe" / "20.png").exists()


def _one_line_error(capsys, argv: list[str], match: str) -> None:
    try:
        code = probe.main(argv)
    except SystemExit as e:  # a bad flag: the parser exits
        code = e.code
    assert code == EXIT_BAD_CONFIG
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and match in err, err


def test_user_errors_exit_2_with_one_line(run_dir, tmp_path, capsys):
    out = ["--out", str(tmp_path / "out")]
    _one_line_error(capsys, ["--workdir", str(run_dir), *out, "--layers", "block_5"], "block_5")
    _one_line_error(capsys, ["--workdir", str(run_dir), *out, "--step", "15"], "--step 15")
    _one_line_error(capsys, ["--workdir", str(tmp_path), *out], "no config.json")
    (tmp_path / "afile").write_text("")
    _one_line_error(capsys, ["--workdir", str(tmp_path / "afile")], "is a file, not a directory")
    _one_line_error(capsys, ["--workdir", str(run_dir), *out, "--positions", "40"], "positions")
    _one_line_error(capsys, ["--workdir", str(run_dir), *out, "--sequences", "0"], "--sequences=0")
    _one_line_error(capsys, ["--workdir", str(run_dir), "--no-such-flag"], "--no-such-flag")
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run_dir / "config.json", bare / "config.json")
    _one_line_error(capsys, ["--workdir", str(bare), *out], "no checkpoint")
    config = json.loads((run_dir / "config.json").read_text())
    config["data"]["graph"]["Z2"]["mode"] = "context"
    (bare / "config.json").write_text(json.dumps(config))
    _one_line_error(capsys, ["--workdir", str(bare), "--init", *out], "context nodes ['Z2']")
    assert not (tmp_path / "out").exists()


def test_module_entry_point(tmp_path):
    """`python -m gssm_jax.probe` runs main and returns its exit code."""
    code, _, err = run_cmd(
        [sys.executable, "-m", "gssm_jax.probe", "--workdir", str(tmp_path)], ROOT, timeout=120
    )
    assert code == EXIT_BAD_CONFIG
    assert err.strip().splitlines() == [
        f"error: --workdir {tmp_path}: no config.json (not a gssm_jax run directory)"
    ]


def test_run_config_graph_replaces_the_default(tmp_path):
    """A run's graph is read as saved, not merged into the default `four` graph."""
    config = default_config()
    with config.unlocked():
        config.data.graph = {
            "Z1": dict(state_dim=3, alpha=0.1, parents=["X"]),
            "X": dict(state_dim=5, alpha=0.2, parents=["Z1"], observed=True),
        }
        config.model.nb_layers = 3
    (tmp_path / "config.json").write_text(config.to_json_best_effort())
    run = open_run(str(tmp_path))  # no checkpoints/ yet: read, but asking for a step is refused
    graph = run.graph
    assert [n.name for n in graph.nodes] == ["Z1", "X"] and graph.hidden[0].parents == ("X",)
    assert run.config.model.nb_layers == 3 and len(run.tables) == 2
    assert run.config.mesh.data == -1 and run.config.model.transformer.attention == "auto"
