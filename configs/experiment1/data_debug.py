"""A few-second version of `data.py` for tests and smoke runs: the same graph, one point on each side
of the sweep (small alpha_Z, small alpha_X), 2 seeds, 1,024 training and 128 test sequences of 32
tokens (the sequence length of tests/conftest.py TINY)."""

import os

import ml_collections

from configs.experiment1 import data


def get_config() -> ml_collections.ConfigDict:
    c = data.get_config()
    c.root = os.path.join(os.environ.get("GSSM_DATA_ROOT", "datasets"), "experiment1_debug")
    c.grid = [{"alpha_x": [1e-1], "alpha_z": [1e-3]}, {"alpha_x": [1e-3], "alpha_z": [1e-1]}]
    c.seeds = [0, 1]
    c.n_train = 1024
    c.n_test = 128
    c.seq_len = 32
    c.batch_size = 512
    return c
