"""What a run trains and is measured on: a GSSM process (stream or written set) with its exact
entropy, or real text with bits per byte. The trainer asks its `RunData` for the datasets, for
what each batch is measured against, and for the records and lines those measures make.

A GSSM run's records carry `entropy` and `kl_gap = loss - entropy`, as they always have. A text
run has no true process, so no exact entropy: its records carry `bits_per_token` and
`bits_per_byte` (docs/text.md) and no `entropy` or `kl_gap` key at all.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import NamedSharding

from gssm_jax.config import graph_of, headline_metric, is_text
from gssm_jax.data import text, text_metrics
from gssm_jax.data.text_tokenizers import BYTES
from gssm_jax.gssm.entropy import make_entropy_fn
from gssm_jax.gssm.kernels import as_device_tables, draw_kernels
from gssm_jax.train import inputs

UNIFORM_BITS_PER_BYTE = 8.0  # uniform guessing over the 256 byte values


def with_absolute_paths(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A text run's config with its source and tokenizer paths made absolute (so the recorded
    config reads the same files from any directory); any other config as it is."""
    if not is_text(c):
        return c
    c = c.copy_and_resolve_references()
    t = c.data.text
    if c.data.path:
        c.data.path = os.path.abspath(c.data.path)
    if t.sources:
        t.sources = {name: os.path.abspath(path) for name, path in t.sources.items()}
    if t.tokenizer != BYTES:
        t.tokenizer = os.path.abspath(t.tokenizer)
    return c


class ProcessData:
    """A GSSM run: its graph and kernels, and each batch's exact (or stored) entropy."""

    def __init__(
        self, c: ml_collections.ConfigDict, batch_sharding: NamedSharding, replicated: NamedSharding
    ) -> None:
        self.config = c
        self.graph = graph_of(c)
        self.vocab_size = self.graph.vocab_size
        self.tables_np = draw_kernels(self.graph, c.data.graph_seed)
        self.tables = jax.device_put(as_device_tables(self.tables_np), replicated)
        mesh = batch_sharding.mesh
        self.entropy_fn = jax.jit(
            make_entropy_fn(
                self.graph,
                c.data.seq_len,
                mc_draws=c.data.mc_draws,
                mc_seed=c.data.mc_seed,
                stderr=True,
            ),
            in_shardings=(replicated, batch_sharding),
            out_shardings=NamedSharding(mesh, jax.sharding.PartitionSpec(batch_sharding.spec[0])),
        )

    def describe(self) -> list[str]:
        return []

    def train_dataset(self, rows: tuple[int, int]) -> Any:
        return inputs.train_dataset(self.config, self.graph, self.tables_np, rows)

    def eval_elements(self, rows: tuple[int, int]) -> list[dict]:
        return inputs.eval_elements(self.config, self.graph, self.tables_np, rows)

    def measure(self, element: dict, batch: jax.Array) -> dict[str, float]:
        """The batch's entropy baseline: a written set's stored values, or the exact entropy."""
        if "entropy" in element:
            return inputs.stored(element)
        return inputs.baseline(*self.entropy_fn(self.tables, batch))

    def train_fields(self, loss: float, measured: dict[str, float]) -> dict[str, float]:
        return {**measured, "kl_gap": loss - measured["entropy"]}

    def eval_record(self, loss: float, measured: list[dict[str, float]]) -> dict[str, float]:
        means = {k: sum(b[k] for b in measured) / len(measured) for k in measured[0]}
        return {"loss": loss, **means, "kl_gap": loss - means["entropy"]}

    def eval_line(self, step: int, ev: dict[str, float]) -> str:
        return (
            f"eval step {step} | loss {ev['loss']:.4f} | entropy {ev['entropy']:.4f} | "
            f"kl_gap {ev['kl_gap']:.4f}"
        )

    def done_line(self, ev: dict[str, float] | None) -> str:
        assert ev is not None  # the last step always evaluates
        return (
            f"done: final eval kl_gap {ev['kl_gap']:.4f} nats/token (loss {ev['loss']:.4f}, "
            f"entropy {ev['entropy']:.4f})"
        )

    def final_fields(self) -> dict[str, Any]:
        return {}


def text_eval_record(loss: float, scored_tokens: int, scored_bytes: int) -> dict[str, float]:
    """A text eval record: the mean loss (nats/token) in bits per token and per byte."""
    return {
        "loss": loss,
        "bits_per_token": text_metrics.bits_per_token(loss),
        "bits_per_byte": text_metrics.bits_per_byte(loss, scored_tokens, scored_bytes),
    }


class TextData:
    """A text run: its corpus (read, tokenised and split at start-up), bits per byte of each batch.

    The held-out baselines (the train split's unigram model on the eval batches, and uniform's 8
    bits per byte) are computed once and written to final.json beside the last eval.
    """

    def __init__(
        self, c: ml_collections.ConfigDict, batch_sharding: NamedSharding, replicated: NamedSharding
    ) -> None:
        self.config = c
        self.corpus = text.corpus_from_config(c.data)  # TextDataError: one line, exit 2
        self.tokenizer = tok = self.corpus.tokenizer
        self.vocab_size = tok.vocab_size
        self.headline = headline_metric(c.data)
        batch = c.data.batch_size
        whole = text.eval_batches(self.corpus, batch, (0, batch), c.eval.batches)
        self.unigram = text_metrics.unigram_baseline(self.corpus, [b["tokens"] for b in whole])
        token_bytes_V = jax.device_put(jnp.asarray(tok.token_bytes_V, jnp.int32), replicated)

        def scored_bytes(tokens_BxT: jax.Array) -> jax.Array:
            return token_bytes_V[tokens_BxT[:, 1:]].sum()

        self._bytes_fn = jax.jit(
            scored_bytes, in_shardings=batch_sharding, out_shardings=replicated
        )

    def describe(self) -> list[str]:
        u = self.unigram
        return [
            f"text tokenizer: {self.tokenizer.describe()}",
            *self.corpus.describe(),
            f"held-out baselines on the {self.config.eval.batches} eval batches: uniform "
            f"{UNIFORM_BITS_PER_BYTE:g} bits/byte, unigram {u['bits_per_byte']:.4f} bits/byte "
            f"({u['bits_per_token']:.4f} bits/token)",
        ]

    def train_dataset(self, rows: tuple[int, int]) -> Any:
        return inputs.text_train_dataset(self.config, self.corpus, rows)

    def eval_elements(self, rows: tuple[int, int]) -> list[dict]:
        return inputs.text_eval_elements(self.config, self.corpus, rows)

    def measure(self, element: dict, batch: jax.Array) -> dict[str, float]:
        """The global batch's scored targets and the bytes of text they stand for."""
        if "scored_bytes" in element:
            return {"tokens": int(element["scored_tokens"]), "bytes": int(element["scored_bytes"])}
        b, t = batch.shape
        return {"tokens": b * (t - 1), "bytes": int(self._bytes_fn(batch))}

    def train_fields(self, loss: float, measured: dict[str, float]) -> dict[str, float]:
        record = text_eval_record(loss, int(measured["tokens"]), int(measured["bytes"]))
        return {k: v for k, v in record.items() if k != "loss"}

    def eval_record(self, loss: float, measured: list[dict[str, float]]) -> dict[str, float]:
        tokens = sum(int(m["tokens"]) for m in measured)
        return text_eval_record(loss, tokens, sum(int(m["bytes"]) for m in measured))

    def eval_line(self, step: int, ev: dict[str, float]) -> str:
        return (
            f"eval step {step} | loss {ev['loss']:.4f} | bits_per_byte {ev['bits_per_byte']:.4f}"
            f" | bits_per_token {ev['bits_per_token']:.4f}"
        )

    def done_line(self, ev: dict[str, float] | None) -> str:
        assert ev is not None  # the last step always evaluates
        key = self.headline
        other = "bits_per_token" if key == "bits_per_byte" else "bits_per_byte"
        return (
            f"done: final eval {key} {ev[key]:.4f} (loss {ev['loss']:.4f} nats/token, {other} "
            f"{ev[other]:.4f}; held-out baselines: unigram {self.unigram[key]:.4f}, uniform "
            f"{self.uniform()[key]:.4f})"
        )

    def uniform(self) -> dict[str, float]:
        """Uniform guessing: 8 bits per byte; per token, log2 of the tokenizer's vocabulary."""
        return {
            "bits_per_byte": UNIFORM_BITS_PER_BYTE,
            "bits_per_token": math.log2(self.vocab_size),
        }

    def final_fields(self) -> dict[str, Any]:
        return {
            "text": {
                "headline": self.headline,
                "tokenizer": self.tokenizer.describe(),
                "baselines": {"unigram": self.unigram, "uniform": self.uniform()},
                "sources": [dataclasses.asdict(s) for s in self.corpus.sources],
            }
        }


RunData = ProcessData | TextData


def for_config(
    c: ml_collections.ConfigDict, batch_sharding: NamedSharding, replicated: NamedSharding
) -> RunData:
    """The run's data: text (`data.source="text"`) or a GSSM process."""
    cls = TextData if is_text(c) else ProcessData
    return cls(c, batch_sharding, replicated)
