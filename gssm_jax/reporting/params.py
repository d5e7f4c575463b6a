"""Parameter counts of the runs' models: logged by the run when it did, else from its config by
the model family's own analytic count (`param_count`, no JAX needed)."""

from __future__ import annotations

import functools
import json
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
    from gssm_jax.config import family_config, vocab_size

    c = _merged_config(json.loads(config_json))
    return family_config(c.model, vocab_size(c)).param_count()


def count_params(config: dict | None) -> int | None:
    """Parameters of the model `config` describes; None when it cannot be built here (a family or
    field this version does not know): the report leaves the cell empty rather than guess."""
    if not config:
        return None
    # Only what shapes the parameters: the model section, the graph and the sequence length.
    data = config.get("data", {})
    key = {
        "model": config.get("model", {}),
        "data": {
            k: data.get(k)
            for k in ("graph", "alpha_x", "alpha_z", "seq_len", "source", "text")
            if k in data
        },
    }
    try:
        return _count(json.dumps(key, sort_keys=True))
    except Exception:  # noqa: BLE001 (any failure to build a model means "unknown", not a crash)
        return None
