"""Run by test_family_sharded.py under XLA_FLAGS=--xla_force_host_platform_device_count=8.

Trains each recurrent family (tiny) for 10 steps on one device and on (data, model) meshes (8, 1)
and (4, 2); prints one JSON object: per family and mesh the loss trajectory, and the sharding
spec and per-device shard size of the family's widest parameter.
"""

from __future__ import annotations

import json

import jax
import numpy as np

from gssm_jax import parallel
from gssm_jax.config import default_config
from gssm_jax.train import state as train_state
from gssm_jax.train import step as train_step

VOCAB = 32
MESHES = ((1, 1), (8, 1), (4, 2))
FAMILIES = {
    "mamba": dict(expand=2, state_dim=8, head_dim=8, conv_width=3, chunk_size=8),
    "hawk": dict(expand=2, nb_heads=2, conv_width=3, hidden_dim=32),
    "mingru": dict(expand=2, hidden_dim=32),
    "minlstm": dict(expand=2, hidden_dim=32),
}
WIDEST = {"mamba": "w_zu", "hawk": "w_in", "mingru": "w_in", "minlstm": "w_in"}


def config(family: str, data: int, model: int):
    c = default_config()
    c.model.family, c.model.emb_dim, c.model.nb_layers = family, 16, 1
    c.model[family].update(FAMILIES[family])
    c.data.seq_len, c.data.batch_size = 21, 16  # 20 inputs: two chunks of 8, the last ragged
    c.optim.update(dict(lr=1e-2, warmup=2, steps=10))
    c.mesh.data, c.mesh.model = data, model
    return c


def run(family: str, data: int, model_axis: int) -> dict:
    c = config(family, data, model_axis)
    mesh = parallel.make_mesh(c.mesh, jax.devices()[: data * model_axis])
    parallel.check_divisibility(c, mesh)
    model = train_state.model_from_config(c, VOCAB)
    state, shardings = train_state.create_train_state(c, mesh, model, jax.random.key(0))
    step_fn = train_step.make_train_step(c, model, mesh, shardings)
    sharding = parallel.logical_sharding(("batch", "length"), mesh, c.mesh)
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, VOCAB, (16, 21)).astype(np.int32) for _ in range(2)]
    losses = []
    for k in range(10):
        state, metrics = step_fn(state, jax.device_put(batches[k % 2], sharding))
        losses.append(float(metrics["loss"]))
    widest = state.params["block_0"]["mixer"][WIDEST[family]]
    return {
        "losses": losses,
        "spec": [a if a is None else str(a) for a in widest.sharding.spec],
        "size": widest.size,
        "shard_size": widest.addressable_shards[0].data.size,
    }


if __name__ == "__main__":
    out = {f: {f"{d}x{m}": run(f, d, m) for d, m in MESHES} for f in FAMILIES}
    print(json.dumps(out))
