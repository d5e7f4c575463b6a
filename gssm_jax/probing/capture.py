"""Activations of a Flax model, read with Flax's own mechanisms from the one model that is trained.

Layers are named by module path. `block_i` is the residual stream after block i: the output of
the top-level submodule `block_i`, captured with `capture_intermediates` and a filter on module
paths. `embed` is the residual stream entering the first block (after the embedding), which is no
module's output: a method interceptor sows the first block's input into the same `intermediates`
collection. `block_i/NAME` is the output of a direct child of a block (the attention and MLP
outputs of a transformer block, `attn` and `mlp`); norms are left out. Any model whose blocks are
top-level submodules named `block_<i>` taking the residual stream as their first argument works
(the transformer, and every family that follows the same naming). A module that returns an
(activations, cache) pair is read at its activations.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax

from gssm_jax.models.family import BLOCK_PREFIX, block_name

EMBED = "embed"
BLOCK = re.compile(rf"{BLOCK_PREFIX}(\d+)")
FIRST_BLOCK = (block_name(0),)
_COLLECTION = "intermediates"
_INPUT = "input"


class UnknownLayerError(ValueError):
    """A layer name the model does not have."""


def _is_part(path: tuple[str, ...]) -> bool:
    return len(path) == 2 and BLOCK.fullmatch(path[0]) is not None and "norm" not in path[1]


def activations(output: Any) -> jax.Array:
    """A module's activations: its output, or the first element of an (activations, cache) pair."""
    while isinstance(output, tuple | list):
        output = output[0]
    return output


def _capture(model: nn.Module, wanted: Callable[[tuple[str, ...]], bool], embed: bool):
    """fn(params, tokens_BxL) -> the `intermediates` collection for the modules `wanted` picks
    (and the first block's input when `embed`)."""

    def keep(module: nn.Module, method: str) -> bool:
        return method == "__call__" and wanted(tuple(module.path))

    def sow_input(next_fun, args, kwargs, context):
        if embed and context.method_name == "__call__" and context.module.path == FIRST_BLOCK:
            context.module.sow(_COLLECTION, _INPUT, args[0])
        return next_fun(*args, **kwargs)

    def run(params: Any, tokens_BxL: jax.Array) -> dict:
        with nn.intercept_methods(sow_input):
            _, state = model.apply(
                {"params": params}, tokens_BxL, capture_intermediates=keep, mutable=[_COLLECTION]
            )
        return state[_COLLECTION]

    return run


def _layer_order(name: str) -> tuple:
    if name == EMBED:
        return (-1, 0, "")
    path = name.split("/")
    match = BLOCK.fullmatch(path[0])
    assert match is not None, name  # a captured layer is the embedding or inside a block
    block = int(match.group(1))
    return (block, 0, path[1]) if len(path) == 2 else (block, 1, "")


def available_layers(model: nn.Module, params: Any, tokens_BxL: jax.Array) -> tuple[str, ...]:
    """Every layer `capture` can read from this model, in depth order (traced, not run)."""

    def wanted(path: tuple[str, ...]) -> bool:
        return (len(path) == 1 and BLOCK.fullmatch(path[0]) is not None) or _is_part(path)

    found = jax.eval_shape(_capture(model, wanted, embed=True), params, tokens_BxL)
    names = []
    for block, entries in found.items():
        if not BLOCK.fullmatch(block):
            continue
        if _INPUT in entries and (block,) == FIRST_BLOCK:
            names.append(EMBED)
        if "__call__" in entries:
            names.append(block)
        names += [f"{block}/{child}" for child in entries if child not in ("__call__", _INPUT)]
    return tuple(sorted(names, key=_layer_order))


def residual_layers(layers: Sequence[str]) -> tuple[str, ...]:
    """The residual-stream layers among `layers`: `embed` and the block outputs."""
    return tuple(name for name in layers if "/" not in name)


def check_layers(requested: Sequence[str], available: Sequence[str]) -> None:
    for name in requested:
        if name not in available:
            raise UnknownLayerError(
                f"unknown layer {name!r}; this model has {', '.join(available)}"
            )


def capture_fn(model: nn.Module, layers: Sequence[str]) -> Callable:
    """A pure, jittable fn(params, tokens_BxL) -> {layer: activations_BxLxD} for `layers`."""
    layers = tuple(layers)
    paths = {tuple(name.split("/")) for name in layers if name != EMBED}
    run = _capture(model, lambda path: path in paths, embed=EMBED in layers)

    def fn(params: Any, tokens_BxL: jax.Array) -> dict[str, jax.Array]:
        found = run(params, tokens_BxL)
        out = {}
        for name in layers:
            if name == EMBED:
                out[name] = found[FIRST_BLOCK[0]][_INPUT][0]
                continue
            entries = found
            for part in name.split("/"):
                entries = entries[part]
            out[name] = activations(entries["__call__"][0])
        return out

    return fn
