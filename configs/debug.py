"""The debug run: the `four` graph, a 2-layer transformer, about a minute on a 2-core CPU."""

from gssm_jax.config import default_config


def get_config():
    return default_config()
