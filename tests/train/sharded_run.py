"""Run by test_sharded.py under XLA_FLAGS=--xla_force_host_platform_device_count=8.

    python tests/train/sharded_run.py FAMILY [FAMILY ...]

Trains a tiny model of each family for 10 steps on one device and on (data, model) meshes (8, 1)
and (4, 2) with the default (blocked) attention; the transformer also on (2, 4), and on (4, 2) with
model.transformer.attention='xla'. Prints one JSON object: per family and run the loss trajectory, the device
count, and the sharding spec, shape and first shard's shape of the parameters the test checks (the
transformer's attention and MLP weights and one Adam moment; a recurrent family's widest one).
"""

from __future__ import annotations

import json
import sys

import jax
import numpy as np

from gssm_jax.config import default_config
from gssm_jax.runtime import parallel
from gssm_jax.train import state as train_state
from gssm_jax.train import step as train_step

VOCAB = 32
RUNS = ((1, 1, "auto"), (8, 1, "auto"), (4, 2, "auto"))
TRANSFORMER_RUNS = (*RUNS, (2, 4, "auto"), (4, 2, "xla"))
RECURRENT = {
    "mamba": dict(expand=2, state_dim=8, head_dim=8, conv_width=3, chunk_size=8),
    "hawk": dict(expand=2, nb_heads=2, conv_width=3, hidden_dim=32),
    "mingru": dict(expand=2, hidden_dim=32),
    "minlstm": dict(expand=2, hidden_dim=32),
}
WIDEST = {"mamba": "w_zu", "hawk": "w_in", "mingru": "w_in", "minlstm": "w_in"}


def config(family: str, data: int, model: int, attention: str):
    c = default_config()
    c.model.family, c.model.nb_layers = family, 1
    if family == "transformer":
        c.model.transformer.attention = attention
        c.model.emb_dim, c.model.transformer.nb_heads, c.model.transformer.hidden_dim = 32, 4, 64
        c.data.seq_len = 24
        c.optim.accum_steps = 2
    else:
        c.model.emb_dim = 16
        c.model[family].update(RECURRENT[family])
        c.data.seq_len = 21  # 20 inputs: two chunks of 8, the last ragged
    c.data.batch_size = 16
    c.optim.update(dict(lr=1e-2, warmup=2, steps=10))
    c.mesh.data, c.mesh.model = data, model
    return c


def checked_params(family: str, state) -> dict:
    """The parameters (and the Adam moment) whose sharding the test checks, by name."""
    block = state.params["block_0"]
    if family != "transformer":
        return {"widest": block["mixer"][WIDEST[family]]}
    return {
        "qkv": block["attn"]["qkv"],
        "out": block["attn"]["out"],
        "gate_up": block["mlp"]["gate_up"],
        "down": block["mlp"]["down"],
        "gate_up_adam_mu": state.opt_state[1][0].mu["block_0"]["mlp"]["gate_up"],
    }


def layout(x: jax.Array) -> dict:
    return {
        "spec": [a if a is None or isinstance(a, str) else list(a) for a in x.sharding.spec],
        "shape": list(x.shape),
        "shard_shape": list(x.addressable_shards[0].data.shape),
    }


def run(family: str, data: int, model_axis: int, attention: str) -> dict:
    c = config(family, data, model_axis, attention)
    mesh = parallel.make_mesh(c.mesh, jax.devices()[: data * model_axis])
    parallel.check_divisibility(c, mesh)
    model = train_state.model_from_config(c, VOCAB)
    state, shardings = train_state.create_train_state(c, mesh, model, jax.random.key(0))
    step_fn = train_step.make_train_step(c, model, mesh, shardings)
    sharding = parallel.logical_sharding(("batch", "length"), mesh, c.mesh)
    rng = np.random.default_rng(0)
    shape = (c.data.batch_size, c.data.seq_len)
    batches = [rng.integers(0, VOCAB, shape).astype(np.int32) for _ in range(2)]
    losses = []
    for k in range(10):
        state, metrics = step_fn(state, jax.device_put(batches[k % 2], sharding))
        losses.append(float(metrics["loss"]))
    return {
        "losses": losses,
        "devices": mesh.devices.size,
        "params": {k: layout(v) for k, v in checked_params(family, state).items()},
    }


def runs(family: str) -> dict:
    """Every run of `family`, named DATAxMODEL (with _ATTENTION when not the default)."""
    return {
        f"{d}x{m}" + ("" if a == "auto" else f"_{a}"): run(family, d, m, a)
        for d, m, a in (TRANSFORMER_RUNS if family == "transformer" else RUNS)
    }


if __name__ == "__main__":
    print(json.dumps({family: runs(family) for family in sys.argv[1:]}))
