"""The model families and the one API that training, evaluation, generation and probing share.

    from gssm_jax.models import registry
    model = registry.build(cfg)           # cfg: a family dataclass of gssm_jax.models.configs
    # from a run config: gssm_jax.train.state.model_from_config(config, vocab_size)

    boxed = model.init(rng, tokens_BxL)  # params with logical-axis boxes (nn.unbox for arrays)
    logits_BxLxV = model.apply(params, tokens_BxL)                       # training, evaluation
    logits_BxLxV, cache = model.prefill(params, tokens_BxL, lengths_B, cache_len)
    logits_BxV, cache = model.decode(params, cache, tokens_B)           # one token per sequence

`prefill` reads right-padded prompts: row b's prompt is tokens_BxL[b, :lengths_B[b]] (1 <= length
<= L); logits at positions >= lengths_B[b] are those of the padding and mean nothing. The cache
then holds every sequence at its own length (`cache.lengths`), and `decode` feeds token b at
position lengths_B[b], returning the logits that predict the next one. The transformer's cache is a
KV cache of `cache_len` positions (default L; decoding past it raises `CacheFullError`, or gives
NaN logits for that sequence under jit); the recurrent families keep a fixed-size state whatever
the length. All three are pure functions: jit them, or scan `decode` in a generation loop.

`model.family`, `model.cfg`, `model.param_count()` and `model.flops_per_token(seq_len)` describe
the model. `FAMILIES` maps `model.family` to the module that implements it; nothing else in the
code branches on the family. What a family module defines (Config, Module, init_cache,
cache_capacity, the `block_<i>` names) is the contract of `gssm_jax.models.family`, and every cache
is a `family.Cache` (lengths and one typed entry per block).
"""

from __future__ import annotations

import dataclasses
import importlib
from types import ModuleType
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gssm_jax.models.configs import FAMILY_CONFIGS, Shared
from gssm_jax.models.family import Cache, check_family_module

FAMILIES = {family: f"gssm_jax.models.{family}" for family in FAMILY_CONFIGS}


class CacheFullError(ValueError):
    """A decode step past the positions the cache holds."""


class PromptError(ValueError):
    """Prompt lengths that do not fit the tokens given."""


def family_module(family: str) -> ModuleType:
    """The module implementing `family`, checked against the family contract."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")
    module = importlib.import_module(FAMILIES[family])
    check_family_module(module)
    return module


def _concrete(x: Any) -> np.ndarray | None:
    """x as a NumPy array, or None while it is being traced."""
    if isinstance(x, jax.core.Tracer):
        return None
    return np.asarray(x)


@dataclasses.dataclass(frozen=True)
class Model:
    """A family's Flax module and config behind the shared API (see the module docstring)."""

    cfg: Shared
    module: nn.Module

    @property
    def family(self) -> str:
        return self.cfg.family

    @property
    def implementation(self) -> ModuleType:
        return family_module(self.family)

    def init(self, rng: jax.Array, tokens_BxL: jax.Array) -> Any:
        """Parameters (boxed with their logical axis names) for sequences like tokens_BxL."""
        return self.module.init(rng, tokens_BxL)["params"]

    def apply(self, params: Any, tokens_BxL: jax.Array) -> jax.Array:
        return self._run(params, tokens_BxL)

    def _run(self, params: Any, *args: Any) -> Any:
        """The module's outputs on `args` (Flax types `apply` as also returning the
        (outputs, variables) pair it gives only with `mutable=`)."""
        return self.module.apply({"params": params}, *args)

    def init_cache(self, batch: int, cache_len: int) -> Cache:
        return self.implementation.init_cache(self.cfg, batch, cache_len)

    def prefill(
        self,
        params: Any,
        tokens_BxL: jax.Array,
        lengths_B: jax.Array,
        cache_len: int | None = None,
    ) -> tuple[jax.Array, Cache]:
        """(logits_BxLxV, cache) of right-padded prompts of lengths_B tokens."""
        B, L = tokens_BxL.shape
        cache_len = L if cache_len is None else cache_len
        if cache_len < L:
            raise CacheFullError(f"prefill of {L} positions into a cache of {cache_len}")
        lengths = _concrete(lengths_B)
        if lengths is not None and (
            lengths.shape != (B,) or (lengths < 1).any() or (lengths > L).any()
        ):
            raise PromptError(
                f"prompt lengths must be {B} values in [1, {L}] (the tokens' length), got "
                f"{lengths.tolist()}"
            )
        cache = self.init_cache(B, cache_len)
        valid_B = jnp.asarray(lengths_B, jnp.int32)
        return self._run(params, tokens_BxL, cache, valid_B)

    def decode(self, params: Any, cache: Cache, tokens_B: jax.Array) -> tuple[jax.Array, Cache]:
        """(logits_BxV predicting the next token, cache) after feeding token b at position
        cache.lengths[b]."""
        capacity = self.implementation.cache_capacity(cache)
        lengths = _concrete(cache.lengths)
        if capacity is not None and lengths is not None and (lengths >= capacity).any():
            raise CacheFullError(
                f"decode at position {int(lengths.max())} past the cache's {capacity} positions "
                "(prefill with a larger cache_len)"
            )
        valid_B = jnp.ones_like(cache.lengths)
        logits_Bx1xV, cache = self._run(params, tokens_B[:, None], cache, valid_B)
        return logits_Bx1xV[:, 0], cache

    def param_count(self) -> int:
        return self.cfg.param_count()

    def flops_per_token(self, seq_len: int) -> dict[str, int]:
        return self.cfg.flops_per_token(seq_len)


def build(cfg: Shared, module: nn.Module | None = None) -> Model:
    """The model of a family config; `module` replaces the family's Flax module (a reference
    implementation with the same parameters, for instance)."""
    cfg.check()
    return Model(cfg, module if module is not None else family_module(cfg.family).Module(cfg))
