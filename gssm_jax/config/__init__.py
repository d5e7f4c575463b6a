"""The run configuration: schema (`schema`), config files and saved configs (`loading`), what a
config resolves to (`resolve`) and its checks (`checks`). Config files import what they need from
here: `from gssm_jax.config import default_config`."""

from gssm_jax.config.checks import validate
from gssm_jax.config.errors import ConfigError, MissingConfigFileError
from gssm_jax.config.loading import (
    as_dict,
    config_from_dict,
    config_from_json,
    load_config_file,
    load_python_function,
)
from gssm_jax.config.resolve import (
    checked_family_config,
    family_config,
    family_key,
    graph_of,
    headline_metric,
    is_text,
    mesh_rules,
    require_process,
    resolved_data_path,
    resolved_graph_spec,
    vocab_size,
)
from gssm_jax.config.schema import default_config, four_graph, get_config

__all__ = [
    "ConfigError",
    "MissingConfigFileError",
    "as_dict",
    "checked_family_config",
    "config_from_dict",
    "config_from_json",
    "default_config",
    "family_config",
    "family_key",
    "four_graph",
    "get_config",
    "graph_of",
    "headline_metric",
    "is_text",
    "load_config_file",
    "load_python_function",
    "mesh_rules",
    "require_process",
    "resolved_data_path",
    "resolved_graph_spec",
    "validate",
    "vocab_size",
]
