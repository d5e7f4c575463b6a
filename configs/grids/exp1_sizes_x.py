"""Experiment 1, model sizes on the alpha_X side of the data cross (with sweep.py:sizes):
emb_dim 8..128 at every data point and graph seed."""

import os
import runpy

E1 = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "experiment1.py"))


def get_grid():
    return {**E1["side"]("x"), "model.emb_dim": E1["EMB_DIMS"]}
