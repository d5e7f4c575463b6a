"""Experiment 1, number of training sequences on the alpha_Z side of the data cross (with
sweep.py:sequences): the first N sequences of each set, N from 100 to 1,000,000."""

import os
import runpy

E1 = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "experiment1.py"))


def get_grid():
    return {**E1["side"]("z"), "data.train_sequences": E1["TRAIN_SEQUENCES"]}
