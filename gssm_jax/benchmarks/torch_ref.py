"""A PyTorch eager reference of `gssm_jax.models.transformer.Transformer`, for the benchmarks only.

The same function (pre-norm RMSNorm blocks, rotary causal attention in the GPT-NeoX layout, SwiGLU,
no biases, an untied output head) written the way the earlier PyTorch system writes it: `nn.Linear`
weights stored (out, in), `F.scaled_dot_product_attention(is_causal=True)`, autograd, and
`torch.optim.AdamW` after `clip_grad_norm_`. Its own initialisation is that system's: every matrix
and the embedding from N(0, fan_in^-1) cut at +-3 std (`torch.nn.init.trunc_normal_`), fan_in being
the input width (the embedding's emb_dim, the SwiGLU output projection's hidden size).

torch is an optional dependency (`pip install -e ".[bench]"`): nothing in the package or its tests
needs it. `available()` says whether it imports; everything else imports it lazily.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from typing import Any

import numpy as np

MISSING = "torch is not installed (optional: pip install -e '.[bench]'), PyTorch row skipped"


def available() -> bool:
    return importlib.util.find_spec("torch") is not None


@dataclasses.dataclass(frozen=True)
class TorchShape:
    vocab_size: int
    emb_dim: int = 64
    nb_layers: int = 4
    nb_heads: int = 4
    hidden_dim: int = 256
    rope_theta: float = 10_000.0
    norm_eps: float = 1e-5


def build(shape: TorchShape, seed: int = 0, threads: int | None = 2) -> Any:
    """The reference model (float32, CPU) initialised from torch seed `seed`; sets torch's threads."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    return _model_class()(shape)


def _model_class():
    """The nn.Module classes, defined on first use so that importing this file needs no torch."""
    global _Model
    if _Model is not None:
        return _Model
    import torch
    from torch import nn
    from torch.nn import functional

    def trunc_fan_in(weight: torch.Tensor, fan_in: int) -> None:
        std = fan_in**-0.5
        nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-3 * std, b=3 * std)

    class RMSNorm(nn.Module):
        def __init__(self, dim: int, eps: float) -> None:
            super().__init__()
            self.eps, self.weight = eps, nn.Parameter(torch.ones(dim))

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight

    class Attention(nn.Module):
        def __init__(self, s: TorchShape) -> None:
            super().__init__()
            self.heads, self.head_dim = s.nb_heads, s.emb_dim // s.nb_heads
            self.qkv = nn.Linear(s.emb_dim, 3 * s.emb_dim, bias=False)
            self.out = nn.Linear(s.emb_dim, s.emb_dim, bias=False)
            trunc_fan_in(self.qkv.weight, s.emb_dim)
            trunc_fan_in(self.out.weight, s.emb_dim)

        def forward(self, x, sin, cos):
            B, L, D = x.shape
            q, k, v = self.qkv(x).view(B, L, 3, self.heads, self.head_dim).unbind(2)
            q, k, v = (t.transpose(1, 2) for t in (rope(q, sin, cos), rope(k, sin, cos), v))
            o = functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.out(o.transpose(1, 2).reshape(B, L, D))

    class Mlp(nn.Module):
        def __init__(self, s: TorchShape) -> None:
            super().__init__()
            self.gate = nn.Linear(s.emb_dim, s.hidden_dim, bias=False)
            self.up = nn.Linear(s.emb_dim, s.hidden_dim, bias=False)
            self.down = nn.Linear(s.hidden_dim, s.emb_dim, bias=False)
            trunc_fan_in(self.gate.weight, s.emb_dim)
            trunc_fan_in(self.up.weight, s.emb_dim)
            trunc_fan_in(self.down.weight, s.hidden_dim)

        def forward(self, x):
            return self.down(functional.silu(self.gate(x)) * self.up(x))

    class Block(nn.Module):
        def __init__(self, s: TorchShape) -> None:
            super().__init__()
            self.attn_norm, self.attn = RMSNorm(s.emb_dim, s.norm_eps), Attention(s)
            self.mlp_norm, self.mlp = RMSNorm(s.emb_dim, s.norm_eps), Mlp(s)

        def forward(self, x, sin, cos):
            x = x + self.attn(self.attn_norm(x), sin, cos)
            return x + self.mlp(self.mlp_norm(x))

    def rope(x, sin, cos):  # x: (B, L, H, K); sin, cos: (L, 1, K/2)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)

    class Model(nn.Module):
        def __init__(self, s: TorchShape) -> None:
            super().__init__()
            self.shape = s
            self.embed = nn.Embedding(s.vocab_size, s.emb_dim)
            trunc_fan_in(self.embed.weight, s.emb_dim)
            self.blocks = nn.ModuleList(Block(s) for _ in range(s.nb_layers))
            self.final_norm = RMSNorm(s.emb_dim, s.norm_eps)
            self.head = nn.Linear(s.emb_dim, s.vocab_size, bias=False)
            trunc_fan_in(self.head.weight, s.emb_dim)
            self._rope: dict[int, tuple] = {}

        def rope_tables(self, length: int):
            if length not in self._rope:
                K = self.shape.emb_dim // self.shape.nb_heads
                freq = self.shape.rope_theta ** (-torch.arange(0, K, 2, dtype=torch.float32) / K)
                angle = torch.arange(length, dtype=torch.float32)[:, None] * freq[None, :]
                self._rope[length] = (angle.sin()[:, None, :], angle.cos()[:, None, :])
            return self._rope[length]

        def forward(self, tokens):
            sin, cos = self.rope_tables(tokens.shape[1])
            x = self.embed(tokens)
            for block in self.blocks:
                x = block(x, sin, cos)
            return self.head(self.final_norm(x))

    _Model = Model
    return Model


_Model: Any = None  # the torch Module class, defined on first use (torch is optional)


def load_jax_params(model: Any, params: dict) -> None:
    """Copies a `Transformer`'s float32 params (untied head) into `model` (same function)."""
    import torch

    def put(dst, array) -> None:
        with torch.no_grad():
            dst.copy_(torch.from_numpy(np.array(array, np.float32, copy=True)))

    D = model.shape.emb_dim
    put(model.embed.weight, params["embed"])
    put(model.head.weight, np.asarray(params["head"]).T)
    put(model.final_norm.weight, params["final_norm"]["scale"])
    for i, block in enumerate(model.blocks):
        p = params[f"block_{i}"]
        put(block.attn_norm.weight, p["attn_norm"]["scale"])
        put(block.mlp_norm.weight, p["mlp_norm"]["scale"])
        put(block.attn.qkv.weight, np.asarray(p["attn"]["qkv"]).reshape(D, -1).T)
        put(block.attn.out.weight, np.asarray(p["attn"]["out"]).reshape(-1, D).T)
        gate_up = np.asarray(p["mlp"]["gate_up"])
        put(block.mlp.gate.weight, gate_up[:, 0].T)
        put(block.mlp.up.weight, gate_up[:, 1].T)
        put(block.mlp.down.weight, np.asarray(p["mlp"]["down"]).T)


def logits(model: Any, tokens_BxL: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(np.asarray(tokens_BxL, np.int64))).numpy()


class TrainStep:
    """The earlier system's step: cross-entropy, backward, clip_grad_norm_, AdamW (eager)."""

    def __init__(
        self,
        model: Any,
        lr: float,
        b1: float = 0.9,
        b2: float = 0.95,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        clip_norm: float = 1.0,
    ) -> None:
        import torch

        self.model, self.clip_norm = model, clip_norm
        self.opt = torch.optim.AdamW(
            model.parameters(), lr=lr, betas=(b1, b2), eps=eps, weight_decay=weight_decay
        )

    def __call__(self, tokens_BxT: np.ndarray) -> float:
        """One update on next-token prediction of tokens_BxT; returns the batch's mean loss."""
        import torch
        from torch.nn import functional

        tokens = torch.from_numpy(np.asarray(tokens_BxT, np.int64))
        logits_BxLxV = self.model(tokens[:, :-1])
        loss = functional.cross_entropy(logits_BxLxV.flatten(0, 1), tokens[:, 1:].flatten())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_norm)
        self.opt.step()
        return float(loss.detach())
