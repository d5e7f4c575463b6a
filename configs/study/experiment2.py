"""Study, experiment 2 (question 4): configs/experiment2/onfly.py's graphs of 1, 2, 4 or 8 hidden
nodes (256 joint states, matched entropy) with the study's small model (configs/study/common.py).

    python -m gssm_jax.main --config configs/study/experiment2.py:8 --config.model.family=hawk
"""

import ml_collections

from configs.experiment2 import onfly
from configs.study import common


def get_config(nodes: str = "4") -> ml_collections.ConfigDict:
    c = onfly.get_config(nodes)
    common.small(c)
    return c
