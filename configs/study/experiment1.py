"""Study, experiment 1 (questions 1-3): configs/experiment1/onfly.py's graph (Z1..Z4 -> X, fullrank)
at setup small_x or small_z, with the study's small model (configs/study/common.py).

    python -m gssm_jax.main --config configs/study/experiment1.py:small_x --config.model.family=hawk

`ARG` is `SETUP` (stream data, the issue's infinite-data setting) or `SETUP:files` (train on the
written set of configs/study/data.py for the run's graph seed; `data.train_sequences` picks the
first N of its sequences, the data axis of question 3). Write the sets first:
`python -m gssm_jax.write_data --config configs/study/data.py`.
"""

import os

import ml_collections

from configs.experiment1 import onfly
from configs.study import common, data


def get_config(arg: str = "small_x") -> ml_collections.ConfigDict:
    setup, _, source = arg.partition(":")
    if source not in ("", "files"):
        raise ValueError(f"study/experiment1.py: {arg!r}: expected SETUP or SETUP:files")
    c = onfly.get_config(setup)
    common.small(c)
    if source == "files":
        c.data.source = "files"
        # the run fills in its graph's alphas and its own data.graph_seed: write_data's names
        c.data.path = os.path.join(os.path.abspath(data.root()), data.SET)
    return c
