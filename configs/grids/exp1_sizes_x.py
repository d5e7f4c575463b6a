"""Experiment 1, model sizes on the alpha_X side of the data cross (with sweep.py:sizes):
emb_dim 8..128 at every data point and graph seed."""

from configs.grids.experiment1 import EMB_DIMS, side


def get_grid():
    return {**side("x"), "model.emb_dim": EMB_DIMS}
