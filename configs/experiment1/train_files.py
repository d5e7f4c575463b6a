"""Training on one set of the first experiment's datasets (write them first with `data.py`).

    python -m gssm_jax.main --config configs/experiment1/train_files.py:GRID_ID
    python -m gssm_jax.main --config configs/experiment1/train_files.py:debug[:GRID_ID]

GRID_ID is a key of ROOT/index.json, e.g. `alpha_x=0.1__alpha_z=0.001__seed=3` (default: the grid's
first entry); `debug` selects the sets of `data_debug.py` and the debug-sized model. The graph, graph
seed and sequence length come from the grid config, so they match the set's metadata.
"""

import os

import ml_collections

from configs.experiment1 import data, data_debug
from gssm_jax.config import default_config
from gssm_jax.data.set_grid import entries


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    debug = arg == "debug" or arg.startswith("debug:")
    grid_id = arg.removeprefix("debug").removeprefix(":")
    grid = (data_debug if debug else data).get_config()
    by_id = {e.grid_id: e for e in entries(grid)}
    if grid_id and grid_id not in by_id:
        raise ValueError(f"train_files.py: unknown grid id {grid_id!r}; one of {sorted(by_id)}")
    entry = by_id[grid_id] if grid_id else next(iter(by_id.values()))

    c = default_config()
    c.data.graph = entry.graph.to_dict()
    c.data.graph_seed = entry.graph_seed
    c.data.seq_len = grid.seq_len
    c.data.source = "files"
    c.data.path = os.path.abspath(os.path.join(grid.root, entry.grid_id, "train"))
    if debug:
        return c
    # The original experiment's largest model (12 layers, 12 heads, width 288), ~33k tokens per step.
    c.model.emb_dim = 288
    c.model.nb_layers = 12
    c.model.transformer.nb_heads = 12
    c.model.transformer.hidden_dim = 4 * 288
    c.data.batch_size = 128
    c.optim.steps = 20_000  # ~2.6 epochs of the 1,000,000 training sequences
    c.optim.warmup = 1_000
    c.optim.lr = 1e-3
    c.log.period = 100
    c.eval.period = 1_000
    c.eval.batches = grid.n_test // c.data.batch_size  # 78 batches: 9,984 of the 10,000
    c.checkpoint.period = 1_000
    return c
