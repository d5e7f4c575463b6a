"""Difficulty measures: the gzip proxy's end points, the alpha search, the CLI."""

import math

import numpy as np
import pytest

from gssm_jax import difficulty as difficulty_cli
from gssm_jax.gssm import measure
from gssm_jax.gssm.graph import parse_graph

SMALL = {
    "Z": dict(state_dim=4, alpha=0.1),
    "X": dict(state_dim=16, alpha=0.1, parents=["Z"], observed=True),
}
SETUP = measure.Setup(graph_seed=0, data_seed=0, batch=16, seq_len=256)


def test_gzip_proxy_constant_stream_is_near_zero():
    assert measure.gzip_proxy(np.zeros((64, 1024), np.int32), 32) < 0.01


def test_gzip_proxy_uniform_bytes_is_near_one():
    tokens = np.random.default_rng(0).integers(0, 256, size=(64, 1024))
    assert 0.99 < measure.gzip_proxy(tokens, 256) < 1.02


def test_gzip_proxy_rejects_bad_input():
    with pytest.raises(ValueError, match="vocab_size=300"):
        measure.gzip_proxy(np.zeros((2, 4), np.int32), 300)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        measure.gzip_proxy(np.full((2, 4), 9), 8)


def test_measures_grow_with_alpha_x():
    graph = parse_graph(SMALL)
    easy = measure.measure(measure.with_alphas(graph, alpha_x=1e-3), SETUP)
    hard = measure.measure(measure.with_alphas(graph, alpha_x=100.0), SETUP)
    for name in ("gzip", "entropy"):
        assert 0 <= easy[name] < hard[name], (name, easy, hard)
    assert hard["entropy"] > 0.9 and easy["entropy"] < hard["entropy"] - 0.2


@pytest.mark.parametrize("node,which", [("x", "gzip"), ("x", "entropy"), ("z", "entropy")])
def test_alpha_search_reaches_target(node, which):
    graph = parse_graph(SMALL)
    result = measure.search_alpha(graph, 0.6, node, which, SETUP, tol=0.02)
    assert result.converged, result
    assert abs(result.value - 0.6) <= 0.02
    # The reported alpha reproduces the reported value.
    fixed = {"x": dict(alpha_x=result.alpha), "z": dict(alpha_z=result.alpha)}[node]
    again = measure.measure(measure.with_alphas(graph, **fixed), SETUP, (which,))
    assert math.isclose(again[which], result.value, abs_tol=1e-6)


def test_alpha_search_rejects_unreachable_target():
    graph = parse_graph(SMALL)
    with pytest.raises(ValueError, match="widen bounds"):
        measure.search_alpha(graph, 0.6, "x", "gzip", SETUP, bounds=(1e-4, 1e-3))


def test_cli_prints_grid(tmp_path, capsys):
    config = tmp_path / "small.py"
    config.write_text(
        "from gssm_jax.config import default_config\n"
        "def get_config():\n"
        "    c = default_config()\n"
        f"    c.data.graph = {SMALL!r}\n"
        "    return c\n"
    )
    argv = [
        "--config",
        str(config),
        "--alphas-x",
        "0.01",
        "1",
        "--alphas-z",
        "0.1",
        "--batch",
        "4",
        "--seq-len",
        "256",
    ]
    assert difficulty_cli.main(argv) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert lines[1].split() == ["alpha_X", "alpha_Z", "gzip", "entropy"]
    assert [line.split()[:2] for line in lines[2:]] == [["0.01", "0.1"], ["1", "0.1"]]
    assert "[2/2]" in err
    with pytest.raises(SystemExit) as exit_info:
        difficulty_cli.main(["--config", str(tmp_path / "nope.py")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "nope.py" in err and "no such file" in err
