"""The config schema: defaults validate, every bad value names its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gssm_jax.config import (
    ConfigError,
    default_config,
    family_config,
    resolved_graph_spec,
    validate,
)
from gssm_jax.gssm.graph import GraphError

ROOT = Path(__file__).resolve().parents[2]


def test_default_validates():
    validate(default_config())


@pytest.mark.parametrize(
    ("key", "value", "name"),
    [
        ("data.seq_len", 1, "data.seq_len"),
        ("data.batch_size", 0, "data.batch_size"),
        ("data.source", "disk", "data.source"),
        ("model.transformer.nb_heads", 3, "model.transformer.nb_heads"),
        ("model.dtype", "float16", "model.dtype"),
        ("optim.lr", float("nan"), "optim.lr"),
        ("optim.b2", 1.0, "optim.b2"),
        ("optim.schedule", "linear", "optim.schedule"),
        ("optim.warmup", 10_000, "optim.warmup"),
        ("optim.accum_steps", 3, "optim.accum_steps"),
        ("optim.nonfinite", "ignore", "optim.nonfinite"),
        ("optim.nonfinite_patience", 0, "optim.nonfinite_patience"),
        ("mesh.model", 0, "mesh.model"),
        ("checkpoint.keep", 0, "checkpoint.keep"),
        ("model.transformer.attention", "flash", "model.transformer.attention"),
        ("model.transformer.init", "xavier", "model.transformer.init"),
        ("runtime.keep_freed_memory", "yes", "runtime.keep_freed_memory"),
        ("model.transformer.attention", "cudnn", "model.transformer.attention"),  # needs bfloat16
        ("model.family", "rnn", "model.family"),
        ("model.kernels", "fast", "model.kernels"),
    ],
)
def test_bad_values_name_their_key(key, value, name):
    c = default_config()
    *sections, field = key.split(".")
    node = c
    for section in sections:
        node = node[section]
    node[field] = value
    with pytest.raises(ConfigError, match=f"config {name}="):
        validate(c)


def test_a_rule_that_shards_the_length_axis_is_rejected():
    c = default_config()
    c.mesh.rules = (("batch", "data"), ("length", "model"))
    with pytest.raises(ConfigError, match="config mesh.rules=.*'length'.*not supported"):
        validate(c)


def test_blocked_attention_needs_custom_kernels():
    c = default_config()
    c.model.transformer.attention, c.model.kernels = "blocked", "autodiff"
    with pytest.raises(
        ConfigError, match="config model.transformer.attention='blocked'.*model.kernels"
    ):
        validate(c)


def test_files_source_needs_a_path():
    c = default_config()
    c.data.source = "files"
    with pytest.raises(ConfigError, match="data.path"):
        validate(c)


def test_graph_errors_surface():
    c = default_config()
    c.data.graph.X.parents = ["Z1", "Q"]
    with pytest.raises(GraphError, match="'X', field 'parents'.*unknown parent 'Q'"):
        validate(c)


def test_alpha_overrides():
    c = default_config()
    c.data.alpha_x, c.data.alpha_z = 0.5, 0.25
    spec = resolved_graph_spec(c)
    assert spec["X"]["alpha"] == 0.5
    assert {spec[f"Z{i}"]["alpha"] for i in range(1, 5)} == {0.25}


def test_unknown_key_is_rejected():
    c = default_config()
    with pytest.raises(AttributeError, match="learning_rate"):
        c.optim.learning_rate = 1.0


def test_cudnn_attention_needs_a_head_dimension_cudnn_supports():
    c = default_config()
    c.model.dtype, c.model.transformer.attention = "bfloat16", "cudnn"
    validate(c)  # head dimension 64 / 4 = 16
    c.model.emb_dim, c.model.transformer.nb_heads = 60, 6  # head dimension 10
    with pytest.raises(ConfigError, match="model.transformer.attention=.*multiple of 8"):
        validate(c)


def test_cudnn_attention_on_cpu_is_a_config_error_naming_the_backend():
    from gssm_jax.train.state import model_from_config

    c = default_config()
    c.model.dtype, c.model.transformer.attention = "bfloat16", "cudnn"
    with pytest.raises(ConfigError, match="model.transformer.attention='cudnn' needs a GPU.*'cpu'"):
        model_from_config(c, 32)


def test_experiment1_onfly_setups_are_the_seeds_graph_and_model():
    from gssm_jax.config import graph_of, load_config_file

    path = "configs/experiment1/onfly.py"
    for setup, (alpha_x, alpha_z) in {"small_x": (1e-3, 0.125), "small_z": (5e-2, 1e-3)}.items():
        c = load_config_file(f"{ROOT / path}:{setup}")
        validate(c)
        graph = c.data.graph
        assert graph["X"]["alpha"] == alpha_x and graph["X"]["parents"] == ["Z1", "Z2", "Z3", "Z4"]
        assert all(graph[f"Z{i}"]["alpha"] == alpha_z for i in range(1, 5))
        assert all(graph[f"Z{i}"]["parents"] == ["X"] for i in range(1, 5))
        assert graph_of(c).vocab_size == 32
        m = family_config(c.model, 32)
        assert (m.nb_layers, m.nb_heads, m.emb_dim, m.dtype) == (12, 12, 288, "bfloat16")
    with pytest.raises(ValueError, match="'small_y'"):
        load_config_file(f"{ROOT / path}:small_y")
