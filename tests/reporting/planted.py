"""Planted runs tables for the reporting tests (imported as `planted`): the columns of gssm_jax.reporting.table with made-up
results whose truth is known (a power law with multiplicative noise, a setup effect per seed)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd


def planted_scaling(sizes, data, seeds: int, noise: float, rng_seed: int, law) -> pd.DataFrame:
    """One run per (params, train_sequences, graph seed): kl = law(N, D) * exp(noise * normal)."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for i, (n, d, s) in enumerate(itertools.product(sizes, data, range(seeds))):
        kl = float(law(n, d) * np.exp(noise * rng.standard_normal()))
        rows.append(
            {
                "run": f"r{i}",
                "status": "complete",
                "data.graph_seed": s,
                "model.emb_dim": int(n),
                "data.train_sequences": int(d),
                "family": "transformer",
                "params": int(n),
                "train_sequences": int(d),
                "step": 100 + i,  # a result column: varies, but is no key
                "eval_kl_gap": kl,
                "best_eval_kl_gap": kl,
            }
        )
    return pd.DataFrame(rows)
