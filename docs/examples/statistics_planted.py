"""The statistics and fits of gssm_jax.reporting on planted runs (made-up results with a known
truth, no training): `PYTHONPATH=. python docs/examples/statistics_planted.py OUT_DIR`."""

import itertools
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from gssm_jax.reporting import paired, scaling, scaling_figures, stat_figures, stats

OUT = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
OUT.mkdir(parents=True, exist_ok=True)

# Planted runs: 4 sizes x 4 data sizes x 3 graph seeds, kl = 300 N^-0.5 + 50 D^-0.3, 3% noise.
rng = np.random.default_rng(0)
rows = []
for n, d, s in itertools.product(np.geomspace(1e4, 1e6, 4), np.geomspace(1e5, 1e8, 4), range(3)):
    kl = (300 * n**-0.5 + 50 * d**-0.3) * np.exp(0.03 * rng.standard_normal())
    rows.append(
        {
            "params": n,
            "train_sequences": d,
            "data.graph_seed": s,
            "family": "transformer",
            "flops_per_token": 6 * n,
            "tokens": 128 * d,
            "best_eval_kl_gap": kl,
        }
    )
table = pd.DataFrame(rows)

print(stats.seed_summary(table, "best_eval_kl_gap").head(3).to_string(index=False))
fit = scaling.fit_scaling(table, "best_eval_kl_gap", resamples=1000, seed=0)
print(scaling.describe_fit(fit))
small = table[table.train_sequences == table.train_sequences.max()]
print(scaling.describe_fit(scaling.fit_scaling(small, "best_eval_kl_gap", seed=0)))
try:
    scaling.fit_scaling(table[table.params < 1e5], "best_eval_kl_gap")
except scaling.FitError as e:
    print("FitError:", e)

# Planted comparison: setup small_z costs 0.02 more than small_x on every graph seed.
base = [0.30, 0.10, 0.55, 0.20]
setups = pd.DataFrame(
    [
        {
            "setup": setup,
            "family": fam,
            "data.graph_seed": s,
            "best_eval_kl_gap": b
            + (0.02 + 0.003 * (s % 2) if setup == "small_z" else 0)
            * (1 if fam == "transformer" else -2),
        }
        for setup in ("small_x", "small_z")
        for fam in ("transformer", "mamba")
        for s, b in enumerate(base)
    ]
)
out = paired.compare_groups(setups, "best_eval_kl_gap", "setup", seed=0)
print(out.drop(columns=["confidence"]).to_string(index=False, float_format="%.4f"))

print(scaling_figures.iso_kl_contours(fit, table, f"{OUT}/iso_kl.png"))
print(scaling_figures.kl_vs_compute(table, "best_eval_kl_gap", f"{OUT}/compute.png"))
print(stat_figures.metric_vs_key(table, "params", "best_eval_kl_gap", f"{OUT}/params.png"))
t = np.arange(1, 128)
curves = {
    "small_x": [(1 + 0.1 * s) * 0.5 / t**0.7 for s in range(3)],
    "small_z": [(1 + 0.1 * s) * 0.3 / t**0.4 for s in range(3)],
}
print(stat_figures.kl_t_bands(curves, f"{OUT}/kl_t.png"))
print(stat_figures.kl_t_bands({}, f"{OUT}/none.png"))
