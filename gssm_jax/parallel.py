"""The device mesh and the logical-axis rules that map parameters and activations onto it.

Data, tensor and mixed parallelism are a config change: `mesh.data` x `mesh.model` devices, and
`mesh.rules` mapping logical axis names (batch, length, embed, heads, kv, mlp, vocab) to mesh axes.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from gssm_jax.config import ConfigError

AXES = ("data", "model")


def rules(mesh_cfg: ml_collections.ConfigDict) -> tuple[tuple[str, str | None], ...]:
    return tuple((str(k), v) for k, v in mesh_cfg.rules)


def mesh_shape(mesh_cfg: ml_collections.ConfigDict, n_devices: int) -> tuple[int, int]:
    """(data, model) sizes; `mesh.data = -1` takes every device the model axis leaves."""
    model = mesh_cfg.model
    if n_devices % model:
        raise ConfigError(f"config mesh.model={model}: does not divide the {n_devices} devices")
    data = n_devices // model if mesh_cfg.data == -1 else mesh_cfg.data
    if data * model != n_devices:
        raise ConfigError(
            f"config mesh.data={mesh_cfg.data} x mesh.model={model} = {data * model} devices, "
            f"but {n_devices} are available"
        )
    return data, model


def make_mesh(mesh_cfg: ml_collections.ConfigDict, devices: Sequence | None = None) -> Mesh:
    """A ('data', 'model') mesh over all devices (process-major, so each process holds a data slice)."""
    devices = list(jax.devices() if devices is None else devices)
    shape = mesh_shape(mesh_cfg, len(devices))
    ordered = sorted(devices, key=lambda d: (d.process_index, d.id))
    return Mesh(np.array(ordered).reshape(shape), AXES)


def batch_spec(config: ml_collections.ConfigDict) -> PartitionSpec:
    """Sharding of tokens_BxT: the batch axis per the 'batch' rule, the length per 'length'."""
    return nn.logical_to_mesh_axes(("batch", "length"), rules(config.mesh))


def _axis_size(mesh: Mesh, mesh_axes) -> int:
    if mesh_axes is None:
        return 1
    names = (mesh_axes,) if isinstance(mesh_axes, str) else tuple(mesh_axes)
    return int(np.prod([mesh.shape[n] for n in names]))


def check_divisibility(config: ml_collections.ConfigDict, mesh: Mesh) -> None:
    """Raises ConfigError when a sharded dimension is not divisible by its mesh axes."""
    table = dict(rules(config.mesh))
    for key, logical, size in (
        ("model.nb_heads", "heads", config.model.nb_heads),
        ("model.hidden_dim", "mlp", config.model.hidden_dim),
        ("model.emb_dim", "embed", config.model.emb_dim),
    ):
        n = _axis_size(mesh, table.get(logical))
        if size % n:
            raise ConfigError(
                f"config {key}={size}: not divisible by the {n} devices of mesh axis "
                f"{table.get(logical)!r} that logical axis {logical!r} maps to"
            )
    n = _axis_size(mesh, table.get("batch"))
    micro = config.data.batch_size // config.optim.accum_steps
    if micro % n:
        raise ConfigError(
            f"config data.batch_size={config.data.batch_size}: the micro-batch of {micro} "
            f"sequences (batch_size / optim.accum_steps) is not divisible by the {n} devices of "
            f"mesh axis {table.get('batch')!r}"
        )
