"""Experiment 2's debug sweep (with configs/experiment2/onfly.py:debug): the four graphs, one
seed; 4 runs of about a minute each on a 2-core CPU."""

import os
import runpy

E2 = runpy.run_path(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "experiment2", "onfly.py")
)


def get_grid():
    return {"data.graph": [E2["graph"](n) for n in sorted(E2["STATES"])]}
