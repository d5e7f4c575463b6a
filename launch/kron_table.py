"""The README's table of a `launch/kron_sweep.sh` output folder (markdown on stdout).

    python launch/kron_table.py OUT_DIR DENSE_RUN

Per fine-tuned run: init, r, MLP parameters, held-out kl_gap right after the factorisation and after
fine-tuning, and the mean relative distance of the factorised MLP matrices to the dense run's W
right after the factorisation and after fine-tuning.
"""

from __future__ import annotations

import glob
import json
import os
import sys

import numpy as np

from gssm_jax.kron import distance_to_dense, run_params


def _load(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def main(out: str, dense: str) -> None:
    _, dense_params = run_params(dense)
    reference = _load(os.path.join(out, "dense", "final.json"))["eval"]["kl_gap"]
    print(
        "| init | r | MLP params | freeze | distill | kl_gap after factorisation | "
        "kl_gap after fine-tuning | distance to W: after factorisation | after fine-tuning |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| dense (reference, trained on) | - | 98304 | - | - | - | {reference:.4f} | - | - |")
    for run in sorted(glob.glob(os.path.join(out, "*_distill-*"))):
        if not os.path.isfile(os.path.join(run, "final.json")):
            continue
        k = _load(os.path.join(run, "kron.json"))
        final = _load(os.path.join(run, "final.json"))["eval"]["kl_gap"]
        freeze = _load(os.path.join(run, "config.json"))["optim"]["freeze"]
        before = np.mean([m["relative_error"] for m in k["matrices"]])
        after = np.mean(distance_to_dense(dense_params, run_params(run)[1]))
        p = k["params"]
        print(
            f"| {k['init']} | {k['terms']} | {p['mlp_after']} | {freeze} | "
            f"{'yes' if run.endswith('distill-1') else 'no'} | {k['eval_after']['kl_gap']:.4f} | "
            f"{final:.4f} | {before:.3f} | {after:.3f} |"
        )


if __name__ == "__main__":
    main(*sys.argv[1:3])
