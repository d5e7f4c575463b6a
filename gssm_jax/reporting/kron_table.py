"""The Kronecker table of a `launch/kron_sweep.sh` output folder, as Markdown rows
(`python -m gssm_jax.kron --table OUT_DIR --from DENSE_RUN`).

Per fine-tuned run: init, r, MLP parameters, held-out kl_gap (a text run: bits per byte) right after
the factorisation and after fine-tuning, and the mean relative distance of the factorised MLP matrices to the dense run's W
right after the factorisation and after fine-tuning.
"""

from __future__ import annotations

import glob
import json
import os

import numpy as np

from gssm_jax.config import headline_metric
from gssm_jax.train.surgery import distance_to_dense, run_params


def _load(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def table_lines(out: str, dense: str) -> list[str]:
    """The Markdown table: the dense reference, then one row per finished fine-tuned run."""
    _, dense_params = run_params(dense)
    lines = []
    key = headline_metric(_load(os.path.join(out, "dense", "config.json")).get("data", {}))
    reference = _load(os.path.join(out, "dense", "final.json"))["eval"][key]
    lines.append(
        f"| init | r | MLP params | freeze | distill | {key} after factorisation | "
        f"{key} after fine-tuning | distance to W: after factorisation | after fine-tuning |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|")
    runs = [
        r
        for r in sorted(glob.glob(os.path.join(out, "*_distill-*")))
        if os.path.isfile(os.path.join(r, "final.json"))
    ]
    dense_mlp = _load(os.path.join(runs[0], "kron.json"))["params"]["mlp_before"] if runs else "-"
    lines.append(
        f"| dense (reference, trained on) | - | {dense_mlp} | - | - | - | {reference:.4f} | - | - |"
    )
    for run in runs:
        k = _load(os.path.join(run, "kron.json"))
        final = _load(os.path.join(run, "final.json"))["eval"][key]
        freeze = _load(os.path.join(run, "config.json"))["optim"]["freeze"]
        before = np.mean([m["relative_error"] for m in k["matrices"]])
        after = np.mean(distance_to_dense(dense_params, run_params(run)[1]))
        p = k["params"]
        lines.append(
            f"| {k['init']} | {k['terms']} | {p['mlp_after']} | {freeze} | "
            f"{'yes' if run.endswith('distill-1') else 'no'} | {k['eval_after'][key]:.4f} | "
            f"{final:.4f} | {before:.3f} | {after:.3f} |"
        )

    return lines
