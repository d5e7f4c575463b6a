"""The first experiment on infinite data (seeds/004): easy-to-infer vs easy-to-predict latents.

    python -m gssm_jax.main --config configs/experiment1/onfly.py:small_x
    python -m gssm_jax.main --config configs/experiment1/onfly.py:small_z
    python -m launch.submit --config configs/experiment1/onfly.py:small_z --name exp1/small_z \
        --config.slurm.gpus_per_node=1 --config.slurm.time=04:00:00

The graph of seeds/004: four hidden nodes Z1..Z4 of 4 states, each reading the previous token, and
X (32 tokens) reading all four. The original matched its two setups to about the same gzip
difficulty (0.74 and 0.72):

- small_x (setup 1): alpha_X = 1e-3, alpha_Z = 0.125: latents easy to infer from the tokens;
- small_z (setup 2): alpha_X = 5e-2, alpha_Z = 1e-3: latents easy to predict from their past.

Here the match depends on the graph seed. `python -m gssm_jax.gssm.difficulty --config
configs/experiment1/onfly.py --alphas-x 1e-3 5e-2 --alphas-z 0.125 1e-3 --graph-seed G` (32 x 1024
tokens) measured gzip 0.32, 0.46, 0.59, 0.21 for small_x and 0.75, 0.54, 0.74, 0.65 for small_z at
G = 0, 1, 2, 3; match a pair per seed with its --target/--search mode before comparing runs.

The model is that experiment's largest (12 layers, 12 heads, width 288, SwiGLU 1152, bfloat16), on
batches of 16 x 2048 tokens generated on the fly; on a GPU, model.attention=auto is cuDNN flash
attention. Use several GPUs by data parallelism (mesh.data=-1 takes them all; the batch must split
evenly) and raise data.batch_size to fill their memory (`python -m gssm_jax.bench train --preset
seeds004 --max-batch` finds the largest batch that fits one device).
"""

import ml_collections

from gssm_jax.config import default_config

SETUPS = {
    "small_x": dict(alpha_x=1e-3, alpha_z=0.125),
    "small_z": dict(alpha_x=5e-2, alpha_z=1e-3),
    "eight_small_x": dict(alpha_x=1e-3, alpha_z=4e-3, nodes=8, vocab=64),
    "eight_small_z": dict(alpha_x=2e-3, alpha_z=1e-3, nodes=8, vocab=64),
}


def graph(alpha_x: float, alpha_z: float, nodes: int = 4, vocab: int = 32) -> dict:
    """Z1..Z<nodes> (4 states, each reading the previous token) -> X; one Dirichlet row per joint
    configuration of a node's inputs (`fullrank`), as the original drew them."""
    hidden = {
        f"Z{i}": dict(state_dim=4, alpha=alpha_z, parents=["X"], kernel_type="fullrank")
        for i in range(1, nodes + 1)
    }
    observed = dict(
        state_dim=vocab, alpha=alpha_x, parents=list(hidden), observed=True, kernel_type="fullrank"
    )
    return {**hidden, "X": observed}


def get_config(setup: str = "small_z") -> ml_collections.ConfigDict:
    if setup not in SETUPS:
        raise ValueError(f"onfly.py: unknown setup {setup!r}; one of {sorted(SETUPS)}")
    c = default_config()
    c.data.graph = graph(**SETUPS[setup])
    c.data.seq_len = 2048
    c.data.batch_size = 16
    c.model.emb_dim = 288
    c.model.nb_layers = 12
    c.model.nb_heads = 12
    c.model.hidden_dim = 4 * 288
    c.model.dtype = "bfloat16"
    c.optim.steps = 10_000  # 16 x 2048 tokens per step: 328M tokens
    c.optim.warmup = 500
    c.optim.lr = 1e-3
    c.log.period = 50
    c.eval.period = 500
    c.eval.batches = 8
    c.checkpoint.period = 500
    return c
