"""Experiment 2 (with configs/experiment2/onfly.py): the four graphs of 1, 2, 4 and 8 hidden nodes,
each at its matched alpha_Z, times three model seeds."""

import os
import runpy

E2 = runpy.run_path(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "experiment2", "onfly.py")
)


def get_grid():
    return {"data.graph": [E2["graph"](n) for n in sorted(E2["STATES"])], "seed": [0, 1, 2]}
