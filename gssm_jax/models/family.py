"""The contract every model family module keeps, and the typed cache all families share.

A family module (`gssm_jax.models.<family>`, registered in `gssm_jax.models.registry.FAMILIES`)
defines:

- `Config`: its frozen dataclass (a `gssm_jax.models.configs.Shared` subclass);
- `Module(cfg)`: a Flax module called as `(tokens_BxL)` -> logits_BxLxV (training, evaluation)
  or `(tokens_BxL, cache, valid_B)` -> (logits_BxLxV, cache) (prefill, decode);
- `init_cache(cfg, batch, cache_len)`: an empty `Cache`;
- `cache_capacity(cache)`: the positions a cache holds per sequence, None for a fixed-size state.

Names are part of the contract: the module's blocks are `block_<i>` (`block_name(i)`), i = 0 ..
nb_layers - 1, each with its SwiGLU MLP (where the family has one) as `mlp`; the Kronecker surgery
(`gssm_jax.train.surgery`) and the probes (`gssm_jax.probing.capture`) find them by these names.
`tests/models/test_api.py` checks every registered family against this contract.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any, NamedTuple, Protocol

import flax.linen as nn
import jax

BLOCK_PREFIX = "block_"


def block_name(i: int) -> str:
    """The parameter (and cache) name of block i."""
    return f"{BLOCK_PREFIX}{i}"


class Cache(NamedTuple):
    """A model's decoding state: `lengths` (B,) positions each sequence has filled, and one entry
    per block (in block order) of the family's own typed block cache."""

    lengths: jax.Array
    blocks: tuple[Any, ...]


class FamilyModule(Protocol):
    """What `gssm_jax.models.registry` asks of a family module (see the module docstring)."""

    Config: type
    Module: Callable[[Any], nn.Module]

    def init_cache(self, cfg: Any, batch: int, cache_len: int) -> Cache: ...

    def cache_capacity(self, cache: Cache) -> int | None: ...


REQUIRED = ("Config", "Module", "init_cache", "cache_capacity")


def check_family_module(module: ModuleType) -> None:
    """TypeError naming what a family module lacks of the contract."""
    missing = [name for name in REQUIRED if not hasattr(module, name)]
    if missing:
        raise TypeError(f"family module {module.__name__} lacks {', '.join(missing)}")
    if not callable(module.init_cache) or not callable(module.cache_capacity):
        raise TypeError(f"family module {module.__name__}: init_cache/cache_capacity not callable")
