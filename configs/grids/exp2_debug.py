"""Experiment 2's debug sweep (with configs/experiment2/onfly.py:debug): the four graphs, one
seed; 4 runs of about a minute each on a 2-core CPU."""

from configs.experiment2.onfly import STATES, graph


def get_grid():
    return {"data.graph": [graph(n) for n in sorted(STATES)]}
