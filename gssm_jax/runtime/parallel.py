"""The device mesh and the logical-axis rules that map parameters and activations onto it.

Data, tensor and mixed parallelism are a config change: `mesh.data` x `mesh.model` devices, and
`mesh.rules` mapping logical axis names (batch, length, embed, heads, kv, mlp, vocab) to mesh axes.
Every mistake a config can make here is a ConfigError naming the key and its value.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from gssm_jax.config import ConfigError, family_config, family_key, mesh_rules, vocab_size

AXES = ("data", "model")
Rules = tuple[tuple[str, Any], ...]
rules = mesh_rules  # `mesh.rules` as the (logical axis, mesh axis or None) pairs Flax expects


@contextlib.contextmanager
def mesh_context(mesh: Mesh, mesh_cfg: ml_collections.ConfigDict) -> Iterator[None]:
    """The mesh and the logical-axis rules in context: what tracing a model or step needs."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules(mesh_cfg)):
        yield


def in_mesh(fn: Callable, mesh: Mesh, mesh_cfg: ml_collections.ConfigDict) -> Callable:
    """`fn` called (and so traced) inside `mesh_context`; a jitted `fn`'s `.lower(*args)` too,
    for compiling ahead of time or reading the HLO."""

    def wrap(method: Callable) -> Callable:
        def call(*args: Any) -> Any:
            with mesh_context(mesh, mesh_cfg):
                return method(*args)

        return call

    call = wrap(fn)
    if hasattr(fn, "lower"):
        # a function object takes new attributes; the Callable type declares none
        call.lower = wrap(fn.lower)  # type: ignore[attr-defined]
    return call


def mesh_shape(mesh_cfg: ml_collections.ConfigDict, n_devices: int) -> tuple[int, int]:
    """(data, model) sizes; `mesh.data = -1` takes every device the model axis leaves."""
    model = mesh_cfg.model
    if model < 1 or n_devices % model:
        raise ConfigError(
            f"config mesh.model={model}: must divide the {n_devices} available devices"
        )
    data = n_devices // model if mesh_cfg.data == -1 else mesh_cfg.data
    if data * model != n_devices:
        raise ConfigError(
            f"config mesh.data={mesh_cfg.data} x mesh.model={model} = {data * model} devices, "
            f"but {n_devices} are available"
        )
    return data, model


def make_mesh(mesh_cfg: ml_collections.ConfigDict, devices: Sequence | None = None) -> Mesh:
    """A ('data', 'model') mesh over all devices, process-major so each process holds a data slice."""
    devices = list(jax.devices() if devices is None else devices)
    shape = mesh_shape(mesh_cfg, len(devices))
    ordered = sorted(devices, key=lambda d: (d.process_index, d.id))
    return Mesh(np.array(ordered).reshape(shape), AXES, axis_types=(AxisType.Auto,) * 2)


def logical_spec(names: Sequence[str | None], mesh_cfg: ml_collections.ConfigDict) -> PartitionSpec:
    """PartitionSpec over mesh axes of an array whose axes have these logical names."""
    spec = nn.logical_to_mesh_axes(tuple(names), rules(mesh_cfg))
    assert spec is not None  # Flax returns None only for names=None
    return spec


def logical_sharding(
    names: Sequence[str | None], mesh: Mesh, mesh_cfg: ml_collections.ConfigDict
) -> NamedSharding:
    return NamedSharding(mesh, logical_spec(names, mesh_cfg))


def tree_shardings(logical_specs: Any, mesh: Mesh, mesh_cfg: ml_collections.ConfigDict) -> Any:
    """NamedShardings for a pytree of logical PartitionSpecs (e.g. `nn.get_partition_spec`)."""
    return nn.logical_to_mesh_sharding(logical_specs, mesh, rules(mesh_cfg))


def batch_spec(config: ml_collections.ConfigDict) -> PartitionSpec:
    """Sharding of tokens_BxT: the batch axis per the 'batch' rule, the length per 'length'."""
    return logical_spec(("batch", "length"), config.mesh)


def _mesh_axes(mesh_axes: Any) -> tuple[str, ...]:
    if mesh_axes is None:
        return ()
    return (mesh_axes,) if isinstance(mesh_axes, str) else tuple(mesh_axes)


def data_parallel_size(config: ml_collections.ConfigDict, mesh: Mesh) -> int:
    """Devices the logical batch axis is split over under `config.mesh.rules` (1 if none)."""
    return math.prod(mesh.shape[a] for a in _mesh_axes(batch_spec(config)[0]))


def check_divisibility(config: ml_collections.ConfigDict, mesh: Mesh) -> None:
    """Raises ConfigError when a dimension is sharded over mesh axes whose size does not divide it.

    The batch is checked per micro-batch (data.batch_size / optim.accum_steps), the length as the
    model sees it (data.seq_len - 1 inputs).
    """
    vocab = vocab_size(config)
    sizes = [
        (
            "batch",
            "data.batch_size / optim.accum_steps",
            config.data.batch_size // config.optim.accum_steps,
        ),
        ("length", "data.seq_len - 1", config.data.seq_len - 1),
        ("vocab", "vocabulary size (of data.graph, or data.text.tokenizer's)", vocab),
    ]
    for logical, field, size in family_config(config.model, vocab).axis_sizes():
        key = re.sub(r"[a-z_]+", lambda w: family_key(config.model, w.group()), field)
        sizes.append((logical, key, size))
    for logical, target in rules(config.mesh):
        axes = _mesh_axes(target)
        unknown = [a for a in axes if a not in mesh.shape]
        if unknown:
            raise ConfigError(
                f"config mesh.rules: logical axis {logical!r} maps to {target!r}, but the mesh "
                f"axes are {tuple(mesh.shape)}"
            )
        n = math.prod(mesh.shape[a] for a in axes)
        if n == 1:
            continue
        for name, key, size in sizes:
            if name == logical and size % n:
                devices = " x ".join(f"mesh.{a}={mesh.shape[a]}" for a in axes)
                raise ConfigError(
                    f"config {devices} does not divide {key}={size}: logical axis {logical!r} is "
                    f"sharded over {n} devices"
                )
