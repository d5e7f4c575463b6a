"""What a run config resolves to: its graph (alphas applied), its data path, its vocabulary, its
model dataclass."""

from __future__ import annotations

import functools
import os
import string
from collections.abc import Mapping

import ml_collections

from gssm_jax.config.errors import ConfigError
from gssm_jax.gssm.graph import Graph, parse_graph, with_alphas
from gssm_jax.models.configs import FAMILY_CONFIGS, FieldError, Shared

PATH_FIELDS = ("alpha_x", "alpha_z", "graph_seed")


def resolved_graph_spec(c: ml_collections.ConfigDict) -> dict:
    """The graph of `c.data` with `alpha_x` / `alpha_z` applied."""
    spec = c.data.graph.to_dict() if hasattr(c.data.graph, "to_dict") else dict(c.data.graph)
    return with_alphas(spec, c.data.alpha_x, c.data.alpha_z)


def graph_of(c: ml_collections.ConfigDict) -> Graph:
    """The parsed graph of a run config (GraphError naming the node and field if it is bad)."""
    return parse_graph(resolved_graph_spec(c))


def is_text(c: ml_collections.ConfigDict) -> bool:
    """Whether the run trains on real text (`data.source="text"`): no graph, no exact entropy."""
    return c.data.source == "text"


def headline_metric(data: Mapping) -> str:
    """The metric a run is judged by, from its `data` section (a ConfigDict or a saved dict):
    `kl_gap` for a GSSM run, `bits_per_byte` for text with the byte tokenizer, `bits_per_token`
    with SentencePiece (whose byte counts are approximate, docs/text.md)."""
    if data.get("source") != "text":
        return "kl_gap"
    section = data.get("text") or {}
    tokenizer = section.get("tokenizer", "bytes")
    return "bits_per_byte" if tokenizer == "bytes" else "bits_per_token"


def require_process(c: ml_collections.ConfigDict, command: str) -> None:
    """ConfigError for a text config given to a command that needs a GSSM process (a graph)."""
    if is_text(c):
        raise ConfigError(
            f"config data.source='text': {command} needs a GSSM process (data.graph); a text "
            "run has none"
        )


@functools.lru_cache(maxsize=8)
def _tokenizer_size(path: str, mtime_ns: int, size: int) -> int:
    from gssm_jax.data.text_tokenizers import load_tokenizer

    return load_tokenizer(path).vocab_size


def vocab_size(c: ml_collections.ConfigDict) -> int:
    """The model's vocabulary: the graph's observed states, or the text tokenizer's size (258 for
    bytes; a SentencePiece model's from its file, without reading the corpus)."""
    if not is_text(c):
        return graph_of(c).vocab_size
    # imported here: the tokenizers import this package's errors module
    from gssm_jax.data.text_tokenizers import BYTES, ByteTokenizer, load_tokenizer

    spec = c.data.text.tokenizer
    if spec == BYTES:
        return ByteTokenizer.vocab_size
    try:
        st = os.stat(spec)
    except OSError:
        return load_tokenizer(spec).vocab_size  # raises its ConfigError naming the key
    return _tokenizer_size(spec, st.st_mtime_ns, st.st_size)


def resolved_data_path(c: ml_collections.ConfigDict) -> str:
    """`data.path` with `{alpha_x}`, `{alpha_z}` (X's and the hidden nodes' alpha, `:g`) and
    `{graph_seed}` filled in: the names `gssm_jax.write_data` gives its sets, so a sweep over
    `data.alpha_x`, `data.alpha_z` and `data.graph_seed` reads each point's own set."""
    path = c.data.path
    fields = {name for _, name, _, _ in string.Formatter().parse(path) if name is not None}
    if not fields:
        return path
    unknown = sorted(fields - set(PATH_FIELDS))
    if unknown:
        named = ", ".join(f"{{{f}}}" for f in PATH_FIELDS)
        raise ConfigError(
            f"config data.path={path!r}: unknown field {{{unknown[0]}}}; it may name {named}"
        )
    spec = resolved_graph_spec(c)
    alpha_x = [f["alpha"] for f in spec.values() if f.get("observed", False)]
    alpha_z = sorted({f["alpha"] for f in spec.values() if not f.get("observed", False)})
    if "alpha_z" in fields and len(alpha_z) != 1:
        raise ConfigError(
            f"config data.path={path!r}: {{alpha_z}} needs one alpha for every hidden node, the "
            f"graph has {alpha_z}"
        )
    values = {"alpha_x": f"{alpha_x[0]:g}", "alpha_z": f"{alpha_z[0]:g}"}
    return path.format(graph_seed=c.data.graph_seed, **values)


def check_family(m: ml_collections.ConfigDict) -> str:
    """`m.family`, or a ConfigError naming the key when it is not a registered family."""
    family = m.get("family", "transformer")
    if family not in FAMILY_CONFIGS:
        raise ConfigError(
            f"config model.family={family!r}: must be one of {', '.join(FAMILY_CONFIGS)}"
        )
    return family


def family_config(m: ml_collections.ConfigDict, vocab_size: int) -> Shared:
    """The model section `m` (config.model) as its family's dataclass: the shared `model.*` keys
    and the family's own section `model.<family>`. ConfigError for an unknown family."""
    family = check_family(m)
    cls = FAMILY_CONFIGS[family]
    values = {k: v for k, v in m.items() if k != "family" and k not in FAMILY_CONFIGS}
    values.update(m[family].to_dict())
    return cls(vocab_size=vocab_size, **values)


def family_key(m: ml_collections.ConfigDict, field: str) -> str:
    """The dotted config key a family field of model section `m` comes from."""
    if m.family in m and field in m[m.family]:
        return f"model.{m.family}.{field}"
    return f"model.{field}"


def checked_family_config(c: ml_collections.ConfigDict, vocab_size: int) -> Shared:
    """`family_config` after its checks; a failing one is a ConfigError naming the config key."""
    cfg = family_config(c.model, vocab_size)
    try:
        cfg.check()
    except FieldError as e:
        raise ConfigError(
            f"config {family_key(c.model, e.field)}={e.value!r}: {e.message}"
        ) from None
    return cfg


def mesh_rules(
    mesh_cfg: ml_collections.ConfigDict,
) -> tuple[tuple[str, str | tuple[str, ...] | None], ...]:
    """`mesh.rules` as the tuple of (logical axis, mesh axis or None) pairs Flax expects."""
    return tuple((str(k), v) for k, v in mesh_cfg.rules)
