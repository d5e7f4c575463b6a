"""Datasets of the original first experiment: easy-to-infer vs easy-to-predict latents.

One hidden node Z1 of 64 states drives 32 tokens. alpha_X and alpha_Z each sweep
{1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1} with the other held at 1e-3: 13 graphs (the point
alpha_X = alpha_Z = 1e-3 is shared), 10 seeds each, 1,000,000 training and 10,000 test sequences
of 257 tokens. Write it as an array job, e.g. `sbatch --array=0-129` running
`python -m gssm_jax.write_data --config configs/experiment1/data.py`; ROOT comes from
$GSSM_DATA_ROOT (default ./datasets).
"""

import os

import ml_collections

ALPHAS = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0]
HELD = 1e-3


def graph(alpha_x: float = HELD, alpha_z: float = HELD) -> dict:
    """One Dirichlet row per input configuration (`fullrank`), as the original drew kernels."""
    return {
        "Z1": dict(state_dim=64, alpha=alpha_z, kernel_type="fullrank"),
        "X": dict(
            state_dim=32, alpha=alpha_x, parents=["Z1"], observed=True, kernel_type="fullrank"
        ),
    }


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.root = os.path.join(os.environ.get("GSSM_DATA_ROOT", "datasets"), "experiment1")
    c.graph = graph()
    c.grid = [
        {"alpha_x": list(ALPHAS), "alpha_z": [HELD]},
        {"alpha_x": [HELD], "alpha_z": list(ALPHAS)},
    ]
    c.seeds = list(range(10))
    c.data_seed_offset = 1000
    c.n_train = 1_000_000
    c.n_test = 10_000
    c.seq_len = 257
    c.batch_size = 8192
    c.mc_draws = 64
    return c
