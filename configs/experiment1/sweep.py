"""Experiment 1's sweeps over the finite-data grid points (the original system's latest sweeps).

Write the sets first (`data.py`, or `data_debug.py` for the debug variants), then submit a grid:

    # model size: emb_dim 8..128 (MLP 4x), 4 layers, seq 256, batch 16, lr 1e-3 constant, no wd,
    # 3000 steps; one job array per side of the alpha cross
    python -m launch.submit --config configs/experiment1/sweep.py:sizes \\
        --grid configs/grids/exp1_sizes_x.py --name exp1/sizes_x
    python -m launch.submit --config configs/experiment1/sweep.py:sizes \\
        --grid configs/grids/exp1_sizes_z.py --name exp1/sizes_z
    # number of training sequences (the first N of each 1,000,000-sequence set), emb_dim 64
    python -m launch.submit --config configs/experiment1/sweep.py:sequences \\
        --grid configs/grids/exp1_sequences_x.py --name exp1/sequences_x
    python -m launch.submit --config configs/experiment1/sweep.py:sequences \\
        --grid configs/grids/exp1_sequences_z.py --name exp1/sequences_z
    python -m gssm_jax.report ~/gssm_runs/exp1 --out exp1_report

    # debug variants: a few minutes on a 2-core CPU, sets of data_debug.py
    python -m gssm_jax.write_data --config configs/experiment1/data_debug.py
    python -m launch.submit --config configs/experiment1/sweep.py:debug \\
        --grid configs/grids/exp1_debug.py --name exp1/debug --local

A run reads the set of its own grid point: `data.path` names it with `{alpha_x}`, `{alpha_z}` and
`{graph_seed}`, which the run fills in from its graph (grid keys `data.alpha_x`, `data.alpha_z`,
`data.graph_seed`). The data grid is a cross (alpha_X swept at alpha_Z = 1e-3, and the other way
round), so each sweep is two products, one per side. ROOT comes from $GSSM_DATA_ROOT at submission
(default ./datasets), as for `data.py`.
"""

import os

import ml_collections

from configs import sizes
from configs.experiment1 import data, data_debug
from gssm_jax.config import default_config

SET = "alpha_x={alpha_x}__alpha_z={alpha_z}__seed={graph_seed}/train"
SWEEPS = ("sizes", "sequences", "debug")


def get_config(sweep: str = "sizes") -> ml_collections.ConfigDict:
    if sweep not in SWEEPS:
        raise ValueError(f"sweep.py: unknown sweep {sweep!r}; one of {SWEEPS}")
    grid = (data_debug if sweep == "debug" else data).get_config()
    c = default_config()
    c.data.graph = grid.graph.to_dict()
    c.data.alpha_x = 1e-3  # the held value; a grid sets one side
    c.data.alpha_z = 1e-3
    c.data.seq_len = grid.seq_len
    c.data.source = "files"
    c.data.path = os.path.join(os.path.abspath(grid.root), SET)
    c.model.nb_layers = 4
    c.model.emb_dim = 64
    c.model.transformer.nb_heads = 4
    c.model.transformer.hidden_dim = c.model.get_ref("emb_dim") * 4  # follows a grid's emb_dim
    c.data.batch_size = 16
    c.optim.lr = 1e-3
    c.optim.schedule = "constant"
    c.optim.warmup = 0
    c.optim.weight_decay = 0.0
    c.optim.steps = 3000 if sweep == "sizes" else 10_000
    c.log.period = 50
    c.eval.period = 250
    c.eval.batches = 16
    c.checkpoint.period = 1000
    if sweep == "debug":  # sets of 1,024 sequences of 32 tokens; a minute or so per run
        c.model.nb_layers = 2
        sizes.short_run(c, steps=60, log=10, every=20, eval_batches=4)
    return c
