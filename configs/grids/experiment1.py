"""The lists experiment 1's grid files share, read from the data grid they sweep over
(`configs/experiment1/data.py`); grid files load this one by path (`load_lists`)."""

import os
import runpy

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = runpy.run_path(os.path.join(HERE, "..", "experiment1", "data.py"))

ALPHAS = list(DATA["ALPHAS"])  # each side of the cross: alpha_X (or alpha_Z) over these
HELD = DATA["HELD"]  # the other alpha, held (sweep.py's default for both)
SEEDS = list(range(10))  # graph seeds of the written sets
EMB_DIMS = [8, 16, 32, 64, 128]
TRAIN_SEQUENCES = [100, 300, 1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000]


def side(alpha: str) -> dict:
    """One side of the alpha cross: `alpha` ("x" or "z") over ALPHAS, every graph seed. The z
    side skips the held point, which the x side already has."""
    values = ALPHAS if alpha == "x" else [a for a in ALPHAS if a != HELD]
    return {f"data.alpha_{alpha}": values, "data.graph_seed": SEEDS}


def load_lists() -> dict:
    return {k: v for k, v in globals().items() if k.isupper() or k == "side"}
