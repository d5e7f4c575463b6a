"""The `data.text` config section of a run on real text (`data.source="text"`), and its checks.

One source is `data.path` (a file or folder), named `SINGLE_SOURCE`. Several are
`data.text.sources={name: path}` with `data.path` empty, mixed by `data.text.weights={name:
weight}` (empty: every source weight 1; else one positive weight for each source, no other name).
`check_text_config` checks what the config alone can tell (values, names, that paths exist);
reading the sources (`text.load_corpus`) finds empty files, bad JSONL lines and short corpora.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import Any

from gssm_jax.config.errors import ConfigError
from gssm_jax.data.text_tokenizers import BYTES

SINGLE_SOURCE = "text"  # the name of the one source `data.path` gives

TEXT_DEFAULTS: dict = {
    "sources": {},  # {name: path} of the sources to mix; empty: the one source data.path
    "weights": {},  # {name: weight > 0} (relative; empty: 1 each); windows drawn in proportion
    "tokenizer": BYTES,  # "bytes" or the path of a SentencePiece .model file
    "jsonl_field": "text",  # the string field holding a document in each line of a .jsonl file
    "heldout_fraction": 0.05,  # the last fraction of each source's token stream: eval, never train
}

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _plain(value: Any) -> Any:
    """A ConfigDict section as a dict (its `to_dict`), anything else as it is."""
    return value.to_dict() if hasattr(value, "to_dict") else value


def _fail(key: str, value: Any, message: str) -> ConfigError:
    return ConfigError(f"config {key}={value!r}: {message}")


def text_section(data: Mapping) -> dict:
    """`data.text` with TEXT_DEFAULTS for the keys it lacks; ConfigError for a key it should not have."""
    given = dict(_plain(data.get("text", None)) or {})
    unknown = sorted(set(given) - set(TEXT_DEFAULTS))
    if unknown:
        raise _fail(
            f"data.text.{unknown[0]}",
            given[unknown[0]],
            f"unknown key; keys: {sorted(TEXT_DEFAULTS)}",
        )
    return {**TEXT_DEFAULTS, **given}


def text_sources(data: Mapping) -> dict[str, str]:
    """{name: path} of the run's sources, sorted by name."""
    sources = dict(_plain(text_section(data)["sources"]) or {})
    path = data.get("path", "")
    if sources and path:
        raise _fail("data.path", path, "give data.path (one source) or data.text.sources, not both")
    if not sources:
        if not path:
            raise _fail(
                "data.path",
                path,
                "data.source='text' needs a file or folder (or data.text.sources)",
            )
        sources = {SINGLE_SOURCE: path}
    return dict(sorted(sources.items()))


def text_weights(data: Mapping) -> dict[str, float]:
    """{name: weight} of the run's sources, sorted by name (1 each where weights are empty)."""
    names = list(text_sources(data))
    weights = dict(_plain(text_section(data)["weights"]) or {})
    if not weights:
        return {n: 1.0 for n in names}
    for name, w in weights.items():
        if name not in names:
            raise _fail(f"data.text.weights.{name}", w, f"no source of that name; sources: {names}")
    for name in names:
        w = weights.get(name)
        if w is None:
            raise _fail("data.text.weights", weights, f"no weight for source {name!r}")
        ok = isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w > 0
        if not ok:
            raise _fail(f"data.text.weights.{name}", w, "must be a number > 0")
    return {n: float(weights[n]) for n in names}


def check_text_config(data: Mapping) -> None:
    """Raises ConfigError naming the first bad key of a text run's `data` section."""
    section = text_section(data)
    for name, path in text_sources(data).items():
        key = (
            "data.path"
            if name == SINGLE_SOURCE and data.get("path")
            else f"data.text.sources.{name}"
        )
        if not _NAME.match(name):
            raise _fail(key, path, f"source name {name!r} must be a Python identifier")
        if not isinstance(path, str) or not path:
            raise _fail(key, path, "must be the path of a file or folder")
        if not os.path.exists(path):
            raise _fail(key, path, "no such file or folder")
    text_weights(data)
    tokenizer = section["tokenizer"]
    if not isinstance(tokenizer, str) or not tokenizer:
        raise _fail(
            "data.text.tokenizer", tokenizer, "must be 'bytes' or a SentencePiece .model path"
        )
    if tokenizer != BYTES and not os.path.isfile(tokenizer):
        raise _fail("data.text.tokenizer", tokenizer, "no such file (or 'bytes')")
    field = section["jsonl_field"]
    if not isinstance(field, str) or not field:
        raise _fail("data.text.jsonl_field", field, "must be a non-empty field name")
    fraction = section["heldout_fraction"]
    ok = isinstance(fraction, (int, float)) and not isinstance(fraction, bool)
    if not (ok and 0 < fraction < 1):
        raise _fail("data.text.heldout_fraction", fraction, "must lie strictly between 0 and 1")
