"""Parameter counts of the runs' models: logged by the run when it did, else from its config by
`jax.eval_shape` of the model's init (shapes only, no memory, no compile)."""

from __future__ import annotations

import functools
import json
import math
from typing import Any

PARAM_KEYS = ("params", "num_params", "param_count", "n_params")


def logged_params(*records: dict | None) -> int | None:
    """A parameter count written by the run itself (final.json or a metrics record), if any."""
    for record in records:
        for key in PARAM_KEYS:
            value = (record or {}).get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def _merged_config(config: dict) -> Any:
    """The run's config over today's defaults, so fields a run's version lacked get defaults."""
    import ml_collections

    from gssm_jax.config import default_config

    merged = default_config().to_dict()
    for section, values in config.items():
        if isinstance(values, dict) and isinstance(merged.get(section), dict):
            merged[section] = {**merged[section], **values}
        else:
            merged[section] = values
    return ml_collections.ConfigDict(merged)


@functools.cache
def _count(config_json: str) -> int:
    import jax
    import jax.numpy as jnp

    from gssm_jax.config import resolved_graph_spec
    from gssm_jax.gssm.graph import parse_graph
    from gssm_jax.train.state import model_from_config

    c = _merged_config(json.loads(config_json))
    if "attention" in c.model:  # the kernel does not change the parameters; cudnn needs a GPU
        c.model.attention = "auto"
    vocab = parse_graph(resolved_graph_spec(c)).vocab_size
    model = model_from_config(c, vocab)
    tokens_1xL = jnp.zeros((1, c.data.seq_len - 1), jnp.int32)
    shapes = jax.eval_shape(model.init, jax.random.key(0), tokens_1xL)["params"]
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes))


def count_params(config: dict | None) -> int | None:
    """Parameters of the model `config` describes; None when it cannot be built here (a family or
    field this version does not know): the report leaves the cell empty rather than guess."""
    if not config:
        return None
    # Only what shapes the parameters: the model section, the graph and the sequence length.
    data = config.get("data", {})
    key = {
        "model": config.get("model", {}),
        "data": {k: data.get(k) for k in ("graph", "alpha_x", "alpha_z", "seq_len") if k in data},
    }
    try:
        return _count(json.dumps(key, sort_keys=True))
    except Exception:  # noqa: BLE001 (any failure to build a model means "unknown", not a crash)
        return None
