"""Experiment 1, number of training sequences on the alpha_X side of the data cross (with
sweep.py:sequences): the first N sequences of each set, N from 100 to 1,000,000."""

from configs.grids.experiment1 import TRAIN_SEQUENCES, side


def get_grid():
    return {**side("x"), "data.train_sequences": TRAIN_SEQUENCES}
