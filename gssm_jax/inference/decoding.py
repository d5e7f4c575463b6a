"""Sampling completions from any model with the prefill/decode interface, as pure jittable functions.

A model is any object with the API of `gssm_jax.models.registry.Model` (every family, and the true
process itself as `gssm.scoring.OracleFilter`):

- `prefill(params, tokens_BxL, lengths_B, cache_len) -> (logits_BxLxV, cache)`: reads row b's first
  `lengths_B[b]` tokens (right padding ignored); logits[b, lengths_B[b] - 1] predict its next token;
- `decode(params, cache, tokens_B) -> (logits_BxV, cache)`: appends one token per row;
- `apply(params, tokens_BxL) -> logits_BxLxV`: the full forward pass (the recompute reference).

`generate_cached` runs one prefill and then a `lax.scan` of decode steps; `generate_recompute` runs the
whole forward pass over a fixed (B, L + K) buffer at every step and reads the logits at each row's
last position. Both draw the same tokens from the same logits: with the same keys they agree token
for token (tested), so the second is the reference for the first.

Randomness: row b draws its i-th new token with `fold_in(fold_in(key(seed), seq_ids_B[b]), i)`, so a
completion depends only on the seed, its sequence id and its prompt, not on the batch it ran in.
`temperature = 0` is greedy (argmax); otherwise logits are divided by the temperature and, with
`top_k > 0`, everything below the k-th largest logit is removed before sampling.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp


class LanguageModel(Protocol):
    def prefill(self, params, tokens_BxL, lengths_B, cache_len=None) -> tuple[jax.Array, Any]: ...

    def decode(self, params, cache, tokens_B) -> tuple[jax.Array, Any]: ...

    def apply(self, params, tokens_BxL) -> jax.Array: ...


class Completions(NamedTuple):
    """New tokens (B, K) and the logits each was drawn from (B, K, V), or None when not kept."""

    tokens: jax.Array
    logits: jax.Array | None


def row_keys(seed, seq_ids_B: jax.Array) -> jax.Array:
    """One key per row: fold_in(key(seed), sequence id)."""
    base = jax.random.key(jnp.asarray(seed, jnp.uint32))
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.asarray(seq_ids_B, jnp.uint32))


def top_k_logits(logits_BxV: jax.Array, top_k: int) -> jax.Array:
    """Logits below each row's k-th largest set to -inf (ties at the k-th value are kept)."""
    if top_k <= 0 or top_k >= logits_BxV.shape[-1]:
        return logits_BxV
    kth_B1 = jax.lax.top_k(logits_BxV, top_k)[0][:, -1:]
    return jnp.where(logits_BxV < kth_B1, -jnp.inf, logits_BxV)


def sample_logits(
    keys_B: jax.Array, logits_BxV: jax.Array, temperature: float, top_k: int
) -> jax.Array:
    """One token per row (int32): greedy at temperature 0, else softmax(top-k(logits) / T)."""
    logits_BxV = logits_BxV.astype(jnp.float32)
    if temperature == 0:
        return jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)
    scaled = top_k_logits(logits_BxV / temperature, top_k)
    draw = jax.vmap(lambda k, row: jax.random.categorical(k, row))
    return draw(keys_B, scaled).astype(jnp.int32)


def _step_keys(keys_B: jax.Array, i) -> jax.Array:
    return jax.vmap(lambda k: jax.random.fold_in(k, i))(keys_B)


def decode_scan(
    model: LanguageModel,
    params: Any,
    cache: Any,
    last_B: jax.Array,
    keys_B: jax.Array,
    first_index: Any,
    steps: int,
    temperature: float = 1.0,
    top_k: int = 0,
    keep_logits: bool = False,
) -> tuple[jax.Array, jax.Array | None, jax.Array, Any]:
    """Feeds `last_B` (the newest token) and `steps` - 1 more drawn tokens; returns new tokens
    first_index .. first_index + steps - 1 (steps, B), the logits each was drawn from (steps, B, V)
    or None, and the carry to continue from (the last token drawn, the cache): one `lax.scan`.
    `first_index` may be traced, so one compiled scan serves every chunk of a long generation."""

    def body(carry, i):
        tok_B, cache = carry
        logits, cache = model.decode(params, cache, tok_B)
        nxt = sample_logits(_step_keys(keys_B, i), logits, temperature, top_k)
        return (nxt, cache), (nxt, logits if keep_logits else None)

    index_S = jnp.asarray(first_index, jnp.int32) + jnp.arange(steps, dtype=jnp.int32)
    (last_B, cache), (tok_SxB, logits) = jax.lax.scan(body, (last_B, cache), index_S)
    return tok_SxB, logits, last_B, cache


def decode_steps(
    model: LanguageModel,
    params: Any,
    cache: Any,
    first_B: jax.Array,
    keys_B: jax.Array,
    steps: int,
    temperature: float = 1.0,
    top_k: int = 0,
    keep_logits: bool = False,
) -> tuple[jax.Array, jax.Array | None]:
    """Feeds `first_B` (new token 0) and `steps` - 1 more drawn tokens; returns new tokens 1..steps
    (steps, B) and the logits each was drawn from (steps, B, V) or None: one `lax.scan`."""
    tok_SxB, logits, _, _ = decode_scan(
        model, params, cache, first_B, keys_B, 1, steps, temperature, top_k, keep_logits
    )
    return tok_SxB, logits


def prefill_and_draw(
    model: LanguageModel,
    params: Any,
    prompts_BxL: jax.Array,
    lengths_B: jax.Array,
    keys_B: jax.Array,
    cache_len: int,
    temperature: float = 1.0,
    top_k: int = 0,
) -> tuple[jax.Array, jax.Array, Any]:
    """The prefill of the prompts into a cache of `cache_len` positions and new token 0 of every
    row: (first_B, the logits it was drawn from (B, V), cache)."""
    b = prompts_BxL.shape[0]
    logits_BxLxV, cache = model.prefill(params, prompts_BxL, lengths_B, cache_len)
    logits_BxV = logits_BxLxV[jnp.arange(b), lengths_B - 1]
    first_B = sample_logits(_step_keys(keys_B, 0), logits_BxV, temperature, top_k)
    return first_B, logits_BxV, cache


def generate_cached(
    model: LanguageModel,
    params: Any,
    prompts_BxL: jax.Array,
    lengths_B: jax.Array,
    keys_B: jax.Array,
    max_new: int,
    temperature: float = 1.0,
    top_k: int = 0,
    keep_logits: bool = False,
) -> Completions:
    """`max_new` tokens per row: one prefill (into a cache of L + max_new positions), then
    `max_new - 1` decode steps in a `lax.scan`."""
    max_len = prompts_BxL.shape[1]
    first_B, logits_BxV, cache = prefill_and_draw(
        model, params, prompts_BxL, lengths_B, keys_B, max_len + max_new, temperature, top_k
    )
    rest_KxB, rest_logits = decode_steps(
        model, params, cache, first_B, keys_B, max_new - 1, temperature, top_k, keep_logits
    )
    tokens = jnp.concatenate([first_B[:, None], rest_KxB.T], axis=1)
    if not keep_logits:
        return Completions(tokens, None)
    assert rest_logits is not None  # decode_steps keeps them with keep_logits
    logits = jnp.concatenate([logits_BxV[:, None], jnp.swapaxes(rest_logits, 0, 1)], axis=1)
    return Completions(tokens, logits)


def generate_recompute(
    model: LanguageModel,
    params: Any,
    prompts_BxL: jax.Array,
    lengths_B: jax.Array,
    keys_B: jax.Array,
    max_new: int,
    temperature: float = 1.0,
    top_k: int = 0,
    keep_logits: bool = False,
    buffer_len: int = 0,
) -> Completions:
    """The same tokens as `generate_cached`, by the full forward pass over a (B, L + max_new)
    buffer at each step (the causal mask makes whatever follows a row's last token irrelevant);
    `buffer_len` makes the buffer longer (a benchmark times steps at a given prefix length)."""
    b, max_len = prompts_BxL.shape
    rows = jnp.arange(b)
    size = max(max_len + max_new, buffer_len)
    buf = jnp.zeros((b, size), prompts_BxL.dtype).at[:, :max_len].set(prompts_BxL)

    def body(buf, i):
        logits = model.apply(params, buf)[rows, lengths_B + i - 1]
        tok = sample_logits(_step_keys(keys_B, i), logits, temperature, top_k)
        buf = buf.at[rows, lengths_B + i].set(tok.astype(buf.dtype))
        return buf, (tok, logits if keep_logits else None)

    _, (tok_KxB, logits_KxBxV) = jax.lax.scan(body, buf, jnp.arange(max_new))
    logits = None if not keep_logits else jnp.swapaxes(logits_KxBxV, 0, 1)
    return Completions(tok_KxB.T, logits)


def join(prompts_BxL: jax.Array, lengths_B: jax.Array, new_BxK: jax.Array) -> jax.Array:
    """Rows of prompt then completion, (B, L + K): row b is prompt[:len_b] + new, then zeros."""
    b, max_len = prompts_BxL.shape
    k = new_BxK.shape[1]
    pos_L = jnp.arange(max_len)
    out = jnp.zeros((b, max_len + k), new_BxK.dtype)
    out = out.at[:, :max_len].set(jnp.where(pos_L < lengths_B[:, None], prompts_BxL, 0))
    cols_BxK = lengths_B[:, None] + jnp.arange(k)
    return out.at[jnp.arange(b)[:, None], cols_BxK].set(new_BxK)


def completion_mask(lengths_B: jax.Array, max_new: int, total: int) -> jax.Array:
    """(B, total - 1) mask over positions t = 1..total-1 of the joined rows: True on completions."""
    t = jnp.arange(1, total)
    return (t >= lengths_B[:, None]) & (t < lengths_B[:, None] + max_new)
