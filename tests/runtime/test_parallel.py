"""Meshes and logical-axis shardings: the sizes a config asks for, and clear errors when they fail."""

from __future__ import annotations

import jax
import pytest
from jax.sharding import AbstractMesh, PartitionSpec

from gssm_jax.config import ConfigError, default_config
from gssm_jax.runtime import parallel


def _config(**mesh):
    c = default_config()
    for key, value in mesh.items():
        c.mesh[key] = value
    return c


def test_data_minus_one_takes_every_device_the_model_axis_leaves():
    assert parallel.mesh_shape(_config(data=-1, model=2).mesh, 8) == (4, 2)
    assert parallel.mesh_shape(_config(data=2, model=4).mesh, 8) == (2, 4)
    mesh = parallel.make_mesh(_config().mesh)
    assert mesh.axis_names == ("data", "model")
    assert dict(mesh.shape) == {"data": jax.device_count(), "model": 1}


def test_mesh_that_does_not_match_the_devices_names_the_keys():
    with pytest.raises(ConfigError, match=r"mesh\.data=3 x mesh\.model=2 = 6 devices, but 8"):
        parallel.mesh_shape(_config(data=3, model=2).mesh, 8)
    with pytest.raises(ConfigError, match=r"mesh\.model=3: must divide the 8 available devices"):
        parallel.mesh_shape(_config(model=3).mesh, 8)
    with pytest.raises(ConfigError, match=r"mesh\.data=2 x mesh\.model=1 = 2 devices, but 1"):
        parallel.make_mesh(_config(data=2).mesh, jax.devices()[:1])


def test_model_axis_must_divide_heads_and_mlp():
    c = _config()
    c.model.transformer.nb_heads, c.model.emb_dim, c.model.transformer.hidden_dim = 6, 96, 256
    with pytest.raises(
        ConfigError, match=r"mesh\.model=4 does not divide model\.transformer\.nb_heads=6"
    ):
        parallel.check_divisibility(c, AbstractMesh((2, 4), ("data", "model")))
    c.model.transformer.nb_heads, c.model.transformer.hidden_dim = 4, 250
    with pytest.raises(
        ConfigError, match=r"mesh\.model=4 does not divide model\.transformer\.hidden_dim=250"
    ):
        parallel.check_divisibility(c, AbstractMesh((2, 4), ("data", "model")))
    c.model.transformer.hidden_dim = 256
    parallel.check_divisibility(c, AbstractMesh((2, 4), ("data", "model")))


def test_data_axis_must_divide_each_micro_batch():
    c = _config()
    c.data.batch_size, c.optim.accum_steps = 24, 2
    parallel.check_divisibility(c, AbstractMesh((4, 1), ("data", "model")))
    with pytest.raises(
        ConfigError, match=r"mesh\.data=8 does not divide data\.batch_size / optim\.accum_steps=12"
    ):
        parallel.check_divisibility(c, AbstractMesh((8, 1), ("data", "model")))


def test_rules_naming_an_unknown_mesh_axis_are_an_error():
    c = _config()
    c.mesh.rules = (("batch", "data"), ("heads", "tensor"))
    with pytest.raises(ConfigError, match=r"mesh\.rules: logical axis 'heads' maps to 'tensor'"):
        parallel.check_divisibility(c, AbstractMesh((1, 1), ("data", "model")))


def test_logical_specs_follow_the_rules():
    c = _config()
    assert parallel.batch_spec(c) == PartitionSpec("data", None)
    assert parallel.logical_spec(("embed", None, "heads", "kv"), c.mesh) == PartitionSpec(
        None, None, "model", None
    )
    c.mesh.rules = (("batch", ("data", "model")), ("length", None))
    assert parallel.batch_spec(c) == PartitionSpec(("data", "model"), None)
    mesh = parallel.make_mesh(c.mesh)
    sharding = parallel.logical_sharding(("batch", "length"), mesh, c.mesh)
    assert sharding.spec == PartitionSpec(("data", "model"), None)
