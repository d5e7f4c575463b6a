"""The study's finite training sets (question 3's data axis): configs/experiment1/onfly.py's graph at
small_x and small_z, graph seeds SEEDS, N_TRAIN training and N_TEST test sequences of the study's
length. `python -m gssm_jax.write_data --config configs/study/data.py` writes them under
$GSSM_DATA_ROOT/study (default ./datasets/study); launch.study writes them under its --root."""

import os

import ml_collections

from configs.experiment1 import onfly
from configs.study import common

SEEDS = [0, 1, 2]
N_TRAIN = 4096
N_TEST = 256
SET = "alpha_x={alpha_x}__alpha_z={alpha_z}__seed={graph_seed}/train"


def root() -> str:
    return os.path.join(os.environ.get("GSSM_DATA_ROOT", "datasets"), "study")


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.root = root()
    c.graph = onfly.graph(**onfly.SETUPS["small_x"])
    c.grid = [
        {"alpha_x": [s["alpha_x"]], "alpha_z": [s["alpha_z"]]}
        for s in (onfly.SETUPS["small_x"], onfly.SETUPS["small_z"])
    ]
    c.seeds = list(SEEDS)
    c.data_seed_offset = 1000
    c.n_train = N_TRAIN
    c.n_test = N_TEST
    c.seq_len = common.SEQ_LEN
    c.batch_size = 512
    c.mc_draws = 64
    return c
