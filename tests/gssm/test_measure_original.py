"""The original system's difficulty scale (zlib_int64_bytes) and measuring setup, next to ours."""

import zlib

import numpy as np
import pytest

from gssm_jax import difficulty as difficulty_cli
from gssm_jax.gssm import kernels, measure, sample
from gssm_jax.gssm.graph import parse_graph

SMALL = {
    "Z": dict(state_dim=4, alpha=0.1, kernel_type="fullrank"),
    "X": dict(state_dim=16, alpha=0.1, parents=["Z"], observed=True, kernel_type="fullrank"),
}


def test_zlib_int64_bytes_is_the_original_formula():
    tokens = np.random.default_rng(0).integers(0, 32, size=(8, 100)).astype(np.int32)
    want = len(zlib.compress(tokens.astype(np.int64).tobytes(), 9)) / tokens.size
    assert measure.zlib_int64_bytes(tokens) == want
    assert measure.zlib_int64_bytes(np.zeros((64, 1024), np.int32)) < 0.01


def test_zlib_int64_bytes_rejects_empty_and_float_tokens():
    with pytest.raises(ValueError, match="empty"):
        measure.zlib_int64_bytes(np.zeros((0, 4), np.int32))
    with pytest.raises(ValueError, match="integer tokens"):
        measure.zlib_int64_bytes(np.zeros((2, 4), np.float32))


def test_skip_initial_measures_the_tokens_after_the_initial_zero():
    graph = parse_graph(SMALL)
    setup = measure.Setup(graph_seed=1, data_seed=42, batch=8, seq_len=64, skip_initial=True)
    tokens = np.asarray(
        sample.sample_tokens(graph, kernels.draw_kernels(graph, 1), 42, np.arange(8), 65)
    )
    assert (tokens[:, 0] == 0).all()
    got = measure.measure(graph, setup, ("zlib_int64_bytes", "gzip"))
    assert got["zlib_int64_bytes"] == measure.zlib_int64_bytes(tokens[:, 1:])
    assert got["gzip"] == measure.gzip_proxy(tokens[:, 1:], 16)


def test_original_flag_sets_the_original_setup(capsys, tmp_path):
    config = tmp_path / "c.py"
    config.write_text(
        "from gssm_jax.config import default_config\n"
        f"def get_config():\n    c = default_config()\n    c.data.graph = {SMALL!r}\n    return c\n"
    )
    code = difficulty_cli.main(
        ["--config", str(config), "--original", "--batch", "4", "--measures", "zlib_int64_bytes"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "4 x 2048 tokens, graph seed 0, data seed 42" in out
    assert out.splitlines()[1].split() == ["alpha_X", "alpha_Z", "zlib_int64_bytes"]
