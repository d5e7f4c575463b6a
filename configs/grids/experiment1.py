"""The lists experiment 1's grid files share, read from the data grid they sweep over
(`configs/experiment1/data.py`); the grid files import them."""

from configs.experiment1 import data

ALPHAS = list(data.ALPHAS)  # each side of the cross: alpha_X (or alpha_Z) over these
HELD = data.HELD  # the other alpha, held (sweep.py's default for both)
SEEDS = list(range(10))  # graph seeds of the written sets
EMB_DIMS = [8, 16, 32, 64, 128]
TRAIN_SEQUENCES = [100, 300, 1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000]


def side(alpha: str) -> dict:
    """One side of the alpha cross: `alpha` ("x" or "z") over ALPHAS, every graph seed. The z
    side skips the held point, which the x side already has."""
    values = ALPHAS if alpha == "x" else [a for a in ALPHAS if a != HELD]
    return {f"data.alpha_{alpha}": values, "data.graph_seed": SEEDS}
