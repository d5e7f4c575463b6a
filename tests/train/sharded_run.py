"""Run by test_sharded.py under XLA_FLAGS=--xla_force_host_platform_device_count=8.

Trains the same tiny model for 10 steps on one device and on (data, model) meshes (8, 1), (4, 2)
and (2, 4) with the default (blocked) attention, and on (4, 2) with model.attention='xla'; prints
one JSON object: per run the loss trajectory and the sharding specs of a few parameters.
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
RUNS = ((1, 1, "auto"), (8, 1, "auto"), (4, 2, "auto"), (2, 4, "auto"), (4, 2, "xla"))


def config(data: int, model: int, attention: str):
    c = default_config()
    c.model.attention = attention
    c.model.emb_dim, c.model.nb_layers, c.model.nb_heads, c.model.hidden_dim = 32, 1, 4, 64
    c.data.seq_len, c.data.batch_size = 24, 16
    c.optim.update(dict(lr=1e-2, warmup=2, steps=10, accum_steps=2))
    c.mesh.data, c.mesh.model = data, model
    return c


def run(data: int, model_axis: int, attention: str) -> dict:
    c = config(data, model_axis, attention)
    mesh = parallel.make_mesh(c.mesh, jax.devices()[: data * model_axis])
    parallel.check_divisibility(c, mesh)
    model = train_state.model_from_config(c, VOCAB)
    state, shardings = train_state.create_train_state(c, mesh, model, jax.random.key(0))
    step_fn = train_step.make_train_step(c, model, mesh, shardings)
    sharding = parallel.logical_sharding(("batch", "length"), mesh, c.mesh)
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, VOCAB, (16, 24)).astype(np.int32) for _ in range(2)]
    losses = []
    for k in range(10):
        state, metrics = step_fn(state, jax.device_put(batches[k % 2], sharding))
        losses.append(float(metrics["loss"]))
    block = state.params["block_0"]
    specs = {
        "qkv": block["attn"]["qkv"].sharding.spec,
        "out": block["attn"]["out"].sharding.spec,
        "gate_up": block["mlp"]["gate_up"].sharding.spec,
        "down": block["mlp"]["down"].sharding.spec,
        "gate_up_adam_mu": state.opt_state[1][0].mu["block_0"]["mlp"]["gate_up"].sharding.spec,
    }
    shards = {
        "gate_up": [s.data.shape for s in block["mlp"]["gate_up"].addressable_shards][:1],
    }
    return {
        "losses": losses,
        "specs": {
            k: [a if a is None or isinstance(a, str) else list(a) for a in v]
            for k, v in specs.items()
        },
        "shard_shapes": {k: [list(s) for s in v] for k, v in shards.items()},
        "devices": mesh.devices.size,
    }


if __name__ == "__main__":
    names = {(d, m, a): f"{d}x{m}" + ("" if a == "auto" else f"_{a}") for d, m, a in RUNS}
    print(json.dumps({names[r]: run(*r) for r in RUNS}))
