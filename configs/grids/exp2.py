"""Experiment 2 (with configs/experiment2/onfly.py): the four graphs of 1, 2, 4 and 8 hidden nodes,
each at its matched alpha_Z, times three model seeds."""

from configs.experiment2.onfly import STATES, graph


def get_grid():
    return {"data.graph": [graph(n) for n in sorted(STATES)], "seed": [0, 1, 2]}
