"""Each model family's own config: a frozen dataclass with its checks, sizes, FLOPs and parameters.

This module imports no JAX, so the run config can validate a model before JAX starts. Models take
these dataclasses, never the run config; `gssm_jax.config.family_config` translates `config.model`
into the family's dataclass (the family's section `model.<family>` over the shared `model.*` keys).

A check that fails raises `FieldError(field, value, message)`; the run config reports it under the
key the value came from.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

from gssm_jax.models import kronecker

ATTENTION_CHOICES = ("auto", "blocked", "xla", "cudnn")  # see layers.resolve_attention
KERNEL_CHOICES = ("auto", "custom", "autodiff")  # see layers.resolve_kernels
DTYPE_CHOICES = ("float32", "bfloat16")
MLP_CHOICES = ("dense", "kronecker")
HAWK_DECAY_INITS = ("original", "recurrentgemma", "griffin_ac")
HAWK_FIRST_TOKENS = ("normalized", "reset")
CANDIDATE_CHOICES = ("linear", "log_space")
# weight init schemes, see gssm_jax.models.init
INIT_CHOICES = ("fan_in_zero_out", "fan_in", "fixed")


def cudnn_supports(dtype: str, head_dim: int) -> bool:
    """Whether cuDNN flash attention takes this compute dtype and head dimension."""
    return dtype == "bfloat16" and head_dim % 8 == 0 and head_dim <= 128


class FieldError(ValueError):
    """A model config field whose value cannot work."""

    def __init__(self, field: str, value, message: str) -> None:
        super().__init__(f"{field}={value!r}: {message}")
        self.field, self.value, self.message = field, value, message


def _require(ok: bool, field: str, value, message: str) -> None:
    if not ok:
        raise FieldError(field, value, message)


def _choice(cfg, field: str, choices: tuple[str, ...]) -> None:
    value = getattr(cfg, field)
    _require(value in choices, field, value, f"must be one of {', '.join(choices)}")


def _positive(cfg, *fields: str) -> None:
    for f in fields:
        v = getattr(cfg, f)
        ok = isinstance(v, int) and not isinstance(v, bool) and v > 0
        _require(ok, f, v, "must be a positive integer")


@dataclasses.dataclass(frozen=True)
class Shared:
    """Fields every family has (the shared `model.*` keys) and their checks."""

    vocab_size: int
    emb_dim: int = 64
    nb_layers: int = 2
    norm_eps: float = 1e-5
    weight_tying: bool = False
    init_std: float = 0.02
    dtype: str = "float32"
    remat: bool = False
    kernels: str = "auto"
    # The SwiGLU MLP of the families that have one (every family but mamba): "dense", or
    # "kronecker": each matrix a sum of kron_terms Kronecker products whose second factor (of the
    # D x F gate/up matrices; down uses its transpose) is kron_factor "m2xn2" ("": balanced
    # factorisations of D and F). See gssm_jax.models.mlp and `python -m gssm_jax.kron`.
    mlp: str = "dense"
    kron_terms: int = 1
    kron_factor: str = ""

    family: ClassVar[str] = ""

    def check(self) -> None:
        _positive(self, "vocab_size", "emb_dim", "nb_layers")
        _require(
            self.dtype in DTYPE_CHOICES, "dtype", self.dtype, "must be 'float32' or 'bfloat16'"
        )
        _require(
            self.kernels in KERNEL_CHOICES,
            "kernels",
            self.kernels,
            f"must be one of {', '.join(KERNEL_CHOICES)}",
        )
        for f in ("norm_eps", "init_std"):
            v = getattr(self, f)
            _require(math.isfinite(v) and v > 0, f, v, "must be a finite number > 0")
        self._check_mlp()

    @property
    def mlp_hidden_dim(self) -> int:
        """The SwiGLU MLP's hidden width F, 0 for a family without an MLP."""
        return getattr(self, "hidden_dim", 0)

    def _check_mlp(self) -> None:
        _require(
            self.mlp in MLP_CHOICES, "mlp", self.mlp, f"must be one of {', '.join(MLP_CHOICES)}"
        )
        if self.mlp != "kronecker":
            return
        _require(
            self.mlp_hidden_dim > 0,
            "mlp",
            self.mlp,
            f"needs a family with an MLP; {self.family} blocks have none",
        )
        _positive(self, "kron_terms")
        D, F = self.emb_dim, self.mlp_hidden_dim
        try:
            shapes = kronecker.mlp_shapes(D, F, kronecker.mlp_b_shape(self.kron_factor))
        except kronecker.KronShapeError as e:
            raise FieldError(
                "kron_factor", self.kron_factor, f"{e} (emb_dim={D} x hidden_dim={F})"
            ) from None
        try:
            kronecker.check_terms(self.kron_terms, *shapes["gate_up"])
        except kronecker.KronRankError as e:
            raise FieldError("kron_terms", self.kron_terms, str(e)) from None

    def mlp_params(self) -> int:
        """Parameters of one block's MLP (dense SwiGLU or its Kronecker factors), 0 without one."""
        D, F = self.emb_dim, self.mlp_hidden_dim
        if F == 0:
            return 0
        if self.mlp == "kronecker":
            return kronecker.mlp_param_count(D, F, self.kron_terms, self.kron_factor)["kronecker"]
        return _swiglu_params(D, F)

    def mlp_flops(self) -> int:
        """Matmul FLOPs per token of one block's MLP."""
        D, F = self.emb_dim, self.mlp_hidden_dim
        if F == 0:
            return 0
        if self.mlp == "kronecker":
            return kronecker.mlp_flops_per_token(D, F, self.kron_terms, self.kron_factor)
        return 2 * 3 * D * F

    def mlp_axis_sizes(self) -> list[tuple[str, str, int]]:
        """The MLP's sharded axes: hidden_dim as mlp; a Kronecker MLP's first factors (D1 as
        embed, F1 as mlp)."""
        F = self.mlp_hidden_dim
        if F == 0:
            return []
        if self.mlp != "kronecker":
            return [("mlp", "hidden_dim", F)]
        shapes = kronecker.mlp_shapes(self.emb_dim, F, kronecker.mlp_b_shape(self.kron_factor))
        (d1, f1), _ = shapes["gate_up"]
        return [
            ("mlp", "hidden_dim", F),
            ("embed", "emb_dim / kron_factor", d1),
            ("mlp", "hidden_dim / kron_factor", f1),
        ]

    @property
    def init_scheme(self) -> str:
        """The weight matrices' init scheme (`gssm_jax.models.init`): "fixed" (std init_std) for a
        family without an `init` field."""
        return "fixed"

    def embedding_params(self) -> int:
        """Token embedding, final norm and (untied) output head."""
        V, D = self.vocab_size, self.emb_dim
        return V * D + D + (0 if self.weight_tying else D * V)

    def head_flops(self) -> int:
        return 2 * self.emb_dim * self.vocab_size

    def flops_per_token(self, seq_len: int) -> dict[str, int]:
        """Matmul FLOPs per trained token (multiply-add = 2), forward, backward (2x) and total."""
        forward = self.nb_layers * self.layer_flops(seq_len) + self.head_flops()
        return {"forward": forward, "backward": 2 * forward, "total": 3 * forward}

    def param_count(self) -> int:
        return self.nb_layers * self.layer_params() + self.embedding_params()

    def layer_flops(self, seq_len: int) -> int:  # pragma: no cover - every family overrides it
        raise NotImplementedError

    def layer_params(self) -> int:  # pragma: no cover - every family overrides it
        raise NotImplementedError

    def axis_sizes(self) -> list[tuple[str, str, int]]:
        """Sizes of the logical axes this family's arrays carry besides batch, length and vocab:
        (logical name, the fields it comes from, size). A mesh axis sharding one must divide it."""
        return [("embed", "emb_dim", self.emb_dim)]


def _swiglu_params(D: int, F: int) -> int:
    return 3 * D * F


@dataclasses.dataclass(frozen=True)
class TransformerConfig(Shared):
    """Pre-norm blocks of rotary causal self-attention and a SwiGLU MLP."""

    nb_heads: int = 4
    hidden_dim: int = 256
    rope_theta: float = 10_000.0
    # attention kernel: auto (blocked on CPU, cudnn on GPU in bfloat16, else xla), blocked, xla,
    # cudnn (see gssm_jax.models.layers.resolve_attention)
    attention: str = "auto"
    # weight init (gssm_jax.models.init): fan_in_zero_out (fan_in with the two residual output
    # projections at zero), fan_in (std fan_in^-0.5 cut at +-3 std, the earlier PyTorch system's)
    # or fixed (std init_std; residual output projections init_std / sqrt(2 nb_layers))
    init: str = "fan_in_zero_out"

    family: ClassVar[str] = "transformer"

    @property
    def head_dim(self) -> int:
        return self.emb_dim // self.nb_heads

    @property
    def init_scheme(self) -> str:
        return self.init

    def check(self) -> None:
        super().check()
        _positive(self, "nb_heads", "hidden_dim")
        _require(
            self.init in INIT_CHOICES,
            "init",
            self.init,
            f"must be one of {', '.join(INIT_CHOICES)}",
        )
        _require(
            self.emb_dim % self.nb_heads == 0,
            "nb_heads",
            self.nb_heads,
            f"must divide emb_dim={self.emb_dim}",
        )
        _require(
            self.head_dim % 2 == 0,
            "emb_dim",
            self.emb_dim,
            "head dimension emb_dim/nb_heads must be even for rotary embeddings",
        )
        _require(
            math.isfinite(self.rope_theta) and self.rope_theta > 0,
            "rope_theta",
            self.rope_theta,
            "must be a finite number > 0",
        )
        _require(
            self.attention in ATTENTION_CHOICES,
            "attention",
            self.attention,
            f"must be one of {', '.join(ATTENTION_CHOICES)}",
        )
        if self.attention == "cudnn":
            _require(
                self.dtype == "bfloat16",
                "attention",
                self.attention,
                f"needs model.dtype='bfloat16' (cuDNN flash attention), got {self.dtype!r}",
            )
            _require(
                cudnn_supports(self.dtype, self.head_dim),
                "attention",
                self.attention,
                "needs a head dimension (emb_dim/nb_heads) that is a multiple of 8 and <= 128, "
                f"got {self.head_dim}",
            )
        if self.attention == "blocked":
            _require(
                self.kernels != "autodiff",
                "attention",
                self.attention,
                "is a custom-gradient kernel: it needs model.kernels 'custom' or 'auto'",
            )

    def layer_params(self) -> int:
        D = self.emb_dim
        return 4 * D * D + self.mlp_params() + 2 * D

    def layer_flops(self, seq_len: int) -> int:
        """QKV, output and SwiGLU matmuls (`kronecker.apply_flops` for Kronecker ones), and QK^T and
        AV over the full length (XLA computes the masked half too)."""
        D = self.emb_dim
        return 2 * 4 * D * D + self.mlp_flops() + 2 * 2 * seq_len * D

    def axis_sizes(self) -> list[tuple[str, str, int]]:
        return [
            *super().axis_sizes(),
            ("heads", "nb_heads", self.nb_heads),
            ("kv", "emb_dim / nb_heads", self.head_dim),
            *self.mlp_axis_sizes(),
        ]


def _conv_params(W: int, C: int) -> int:
    return W * C + C  # depthwise weights and bias


@dataclasses.dataclass(frozen=True)
class MambaConfig(Shared):
    """Mamba-2 blocks (no MLP): x + out(norm(SSD(conv(x W_x), dt, B, C) * silu(x W_z))).

    Width E = expand * emb_dim in heads of head_dim; one group of state_dim for B and C; the
    training scan runs in chunks of chunk_size positions (SSD).
    """

    expand: int = 4
    state_dim: int = 64
    head_dim: int = 32
    conv_width: int = 4
    chunk_size: int = 64

    family: ClassVar[str] = "mamba"

    @property
    def inner_dim(self) -> int:
        return self.expand * self.emb_dim

    @property
    def nb_heads(self) -> int:
        return self.inner_dim // self.head_dim

    def check(self) -> None:
        super().check()
        _positive(self, "expand", "state_dim", "head_dim", "conv_width", "chunk_size")
        _require(
            self.inner_dim % self.head_dim == 0,
            "head_dim",
            self.head_dim,
            f"must divide the width expand * emb_dim = {self.inner_dim}",
        )

    def layer_params(self) -> int:
        D, E, N, H, W = self.emb_dim, self.inner_dim, self.state_dim, self.nb_heads, self.conv_width
        projections = D * (2 * E + 2 * N + H) + E * D
        return D + projections + _conv_params(W, E) + _conv_params(W, 2 * N) + 3 * H + E

    def layer_flops(self, seq_len: int) -> int:
        """Projections, depthwise convolutions, and the chunked scan as computed: per position
        C.B and the weighted sum over its chunk (Q x (N + E)), its contribution to the chunk
        state and the state's contribution to it (2 x E x N each)."""
        D, E, N, H, W = self.emb_dim, self.inner_dim, self.state_dim, self.nb_heads, self.conv_width
        Q = min(self.chunk_size, seq_len)
        projections = 2 * (D * (2 * E + 2 * N + H) + E * D)
        return projections + 2 * W * (E + 2 * N) + 2 * Q * (N + E) + 2 * 2 * E * N

    def axis_sizes(self) -> list[tuple[str, str, int]]:
        return [
            *super().axis_sizes(),
            ("heads", "expand * emb_dim / head_dim", self.nb_heads),
            ("kv", "head_dim", self.head_dim),
        ]


@dataclasses.dataclass(frozen=True)
class HawkConfig(Shared):
    """Griffin's Hawk: x + out(RG-LRU(conv(x W_x)) * gelu(x W_g)), then x + SwiGLU(x).

    Width E = expand * emb_dim in nb_heads blocks (the RG-LRU gates are block-diagonal).
    """

    expand: int = 2
    nb_heads: int = 4
    conv_width: int = 4
    hidden_dim: int = 192
    # the decay parameter's init (gssm_jax.models.hawk.decay_init): "original" (the earlier
    # PyTorch system's: its parameter 0.5 log u, u ~ U[0.81, 0.998], read through a softplus),
    # "recurrentgemma" (radius r = sqrt(u) with the softplus inverted, so a = r^(8 r_t)) or
    # "griffin_ac" (a^8 = sigmoid(lam)^8 ~ U[0.9, 0.999], gssm_jax's first choice)
    decay_init: str = "original"
    # position 0 of a sequence: "normalized" (sqrt(1 - a^2) scales every input, the original's) or
    # "reset" (recurrentgemma's: the first input enters unscaled, as after a segment start)
    first_token: str = "normalized"

    family: ClassVar[str] = "hawk"

    @property
    def inner_dim(self) -> int:
        return self.expand * self.emb_dim

    @property
    def head_dim(self) -> int:
        return self.inner_dim // self.nb_heads

    def check(self) -> None:
        super().check()
        _positive(self, "expand", "nb_heads", "conv_width", "hidden_dim")
        _choice(self, "decay_init", HAWK_DECAY_INITS)
        _choice(self, "first_token", HAWK_FIRST_TOKENS)
        _require(
            self.inner_dim % self.nb_heads == 0,
            "nb_heads",
            self.nb_heads,
            f"must divide the width expand * emb_dim = {self.inner_dim}",
        )

    def layer_params(self) -> int:
        D, E, K = self.emb_dim, self.inner_dim, self.head_dim
        mixer = 2 * D * E + _conv_params(self.conv_width, E) + 2 * (E * K + E) + E + E * D
        return 2 * D + mixer + self.mlp_params()

    def layer_flops(self, seq_len: int) -> int:
        D, E, K = self.emb_dim, self.inner_dim, self.head_dim
        mixer = 2 * (2 * D * E + 2 * E * K + E * D) + 2 * self.conv_width * E
        return mixer + self.mlp_flops()

    def axis_sizes(self) -> list[tuple[str, str, int]]:
        return [
            *super().axis_sizes(),
            ("heads", "nb_heads", self.nb_heads),
            ("kv", "expand * emb_dim / nb_heads", self.head_dim),
            *self.mlp_axis_sizes(),
        ]


@dataclasses.dataclass(frozen=True)
class MinGRUConfig(Shared):
    """minGRU ("Were RNNs all we needed?"): h = (1 - z) h + z h~ of width expand * emb_dim, from
    gates and candidates that read only the input; x + out(h), then x + SwiGLU(x)."""

    expand: int = 2
    hidden_dim: int = 192
    # the candidate h~: "linear" (x W_h, the earlier PyTorch system's) or "log_space" (the paper's
    # g(x W_h), g(v) = v + 0.5 for v >= 0 else sigmoid(v): positive, as its log-space scan needs)
    candidate: str = "linear"

    family: ClassVar[str] = "mingru"
    nb_inputs: ClassVar[int] = 2  # candidate, update gate

    @property
    def inner_dim(self) -> int:
        return self.expand * self.emb_dim

    def check(self) -> None:
        super().check()
        _positive(self, "expand", "hidden_dim")
        _choice(self, "candidate", CANDIDATE_CHOICES)

    def layer_params(self) -> int:
        D, E = self.emb_dim, self.inner_dim
        return 2 * D + self.nb_inputs * D * E + E * D + self.mlp_params()

    def layer_flops(self, seq_len: int) -> int:
        D, E = self.emb_dim, self.inner_dim
        return 2 * (self.nb_inputs * D * E + E * D) + self.mlp_flops()

    def axis_sizes(self) -> list[tuple[str, str, int]]:
        return [
            *super().axis_sizes(),
            ("mlp", "expand * emb_dim", self.inner_dim),
            *self.mlp_axis_sizes(),
        ]


@dataclasses.dataclass(frozen=True)
class MinLSTMConfig(MinGRUConfig):
    """minLSTM: h = f' h + i' h~ with forget and input gates normalised to f' + i' = 1."""

    family: ClassVar[str] = "minlstm"
    nb_inputs: ClassVar[int] = 3  # candidate, forget gate, input gate


FAMILY_CONFIGS: dict[str, type[Shared]] = {
    cls.family: cls
    for cls in (TransformerConfig, MambaConfig, HawkConfig, MinGRUConfig, MinLSTMConfig)
}
