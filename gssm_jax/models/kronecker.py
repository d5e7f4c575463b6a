"""Kronecker-factorised matrices: W (m x n) ~ sum_k A_k (m1 x n1) kron B_k (m2 x n2), m = m1 m2, n = n1 n2.

Entry (i1 m2 + i2, j1 n2 + j2) of A kron B is A[i1, j1] B[i2, j2] (`numpy.kron`'s layout). `kron_apply`
multiplies rows by the sum without forming W (a reshape and two contractions); the initialisers
build the factors of a given W:

- `van_loan`: the nearest sum of r Kronecker products in Frobenius norm (Van Loan and Pitsianis): the
  rearrangement R (m1 n1 x m2 n2, row i1 n1 + j1 = block (i1, j1) of W flattened) satisfies
  ||W - sum_k A_k kron B_k||_F = ||R - sum_k vec(A_k) vec(B_k)^T||_F, so the truncated SVD of R is the
  optimum.
- `prune`: the original system's deterministic pruning (see `prune`).
- `random_factors`: normal factors whose sum has the entry scale of a dense init.

Everything but `kron_apply` is NumPy, so `gssm_jax.models.configs` checks factor shapes and counts
parameters and FLOPs without JAX. The Flax module is `gssm_jax.models.mlp.KronMlp`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

INITS = ("vanloan", "prune", "random")
# Parameter names of the factors in KronMlp: optimizers tell new factors from pre-trained ones by them.
FACTOR_NAMES = ("gate_up_a", "gate_up_b", "down_a", "down_b")
Shape = tuple[int, int]


class KronShapeError(ValueError):
    """Factor shapes whose product is not the matrix shape."""


class KronRankError(ValueError):
    """More Kronecker terms than the rank of the rearranged matrix."""


# --- shapes and counts -----------------------------------------------------------------------


def balanced_split(m: int) -> tuple[int, int]:
    """(m1, m2) with m1 m2 = m, m1 <= m2 and m1 the largest divisor of m up to sqrt(m)."""
    m1 = max(d for d in range(1, math.isqrt(m) + 1) if m % d == 0)
    return m1, m // m1


def default_factor_shapes(m: int, n: int) -> tuple[Shape, Shape]:
    """Balanced factor shapes ((m1, n1), (m2, n2)) of an m x n matrix."""
    (m1, m2), (n1, n2) = balanced_split(m), balanced_split(n)
    return (m1, n1), (m2, n2)


def parse_factor(text: str) -> Shape:
    """'2x1' -> (2, 1); raises KronShapeError for anything else."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise KronShapeError(f"factor shape {text!r} is not of the form 'ROWSxCOLS' (e.g. '2x1')")
    return int(parts[0]), int(parts[1])


def factor_shapes(m: int, n: int, b_shape: Shape | None = None) -> tuple[Shape, Shape]:
    """((m1, n1), (m2, n2)) for an m x n matrix whose second factor is `b_shape` (None: balanced)."""
    if b_shape is None:
        return default_factor_shapes(m, n)
    m2, n2 = b_shape
    if m2 <= 0 or n2 <= 0 or m % m2 or n % n2:
        raise KronShapeError(
            f"second factor {m2}x{n2} does not divide the {m}x{n} matrix: "
            f"the factor shapes must multiply to its shape"
        )
    return (m // m2, n // n2), (m2, n2)


def check_shapes(shape_mxn: Shape, a_shape: Shape, b_shape: Shape) -> None:
    """Raises KronShapeError unless a_shape x b_shape (elementwise) is shape_mxn."""
    (m, n), (m1, n1), (m2, n2) = shape_mxn, a_shape, b_shape
    if (m1 * m2, n1 * n2) != (m, n):
        raise KronShapeError(
            f"factor shapes {m1}x{n1} and {m2}x{n2} multiply to {m1 * m2}x{n1 * n2}, "
            f"not to the {m}x{n} matrix"
        )


def max_terms(a_shape: Shape, b_shape: Shape) -> int:
    """The largest rank the (m1 n1) x (m2 n2) rearrangement can have."""
    return min(a_shape[0] * a_shape[1], b_shape[0] * b_shape[1])


def check_terms(terms: int, a_shape: Shape, b_shape: Shape) -> None:
    """Raises KronRankError for r < 1 or r above the rank bound of the rearrangement."""
    bound = max_terms(a_shape, b_shape)
    if not 1 <= terms <= bound:
        raise KronRankError(
            f"{terms} Kronecker terms: must be in [1, {bound}], the largest rank of the "
            f"{a_shape[0] * a_shape[1]}x{b_shape[0] * b_shape[1]} rearrangement for factors "
            f"{a_shape[0]}x{a_shape[1]} and {b_shape[0]}x{b_shape[1]}"
        )


def param_count(a_shape: Shape, b_shape: Shape, terms: int) -> int:
    return terms * (a_shape[0] * a_shape[1] + b_shape[0] * b_shape[1])


def _orders(m: int, a_shape: Shape, b_shape: Shape, terms: int) -> dict[str, int]:
    """FLOPs per row of the two contraction orders of `kron_apply` (multiply-add = 2 FLOPs)."""
    (m1, n1), (m2, n2) = a_shape, b_shape
    n = n1 * n2
    return {"b_first": 2 * terms * (m * n2 + m1 * n), "a_first": 2 * terms * (m * n1 + m2 * n)}


def apply_flops(a_shape: Shape, b_shape: Shape, terms: int) -> int:
    """FLOPs per row of `kron_apply` (the cheaper order); a dense matmul costs 2 m n."""
    m = a_shape[0] * b_shape[0]
    return min(_orders(m, a_shape, b_shape, terms).values())


# --- apply -----------------------------------------------------------------------------------


def kron_apply(x_Nxm: Any, A_rxm1xn1: Any, B_rxm2xn2: Any) -> Any:
    """x @ sum_k kron(A_k, B_k) -> (N, n1 n2), without forming the m x n matrix (JAX arrays).

    x's columns are reshaped to (m1, m2); one einsum contracts m2 with B, the other m1 with A (or the
    other way round, whichever costs fewer FLOPs). Accumulates in float32, returns x's dtype.
    JAX is imported here only, so the shape checks of the run config stay JAX-free.
    """
    import jax.numpy as jnp  # noqa: PLC0415

    r, m1, n1 = A_rxm1xn1.shape
    _, m2, n2 = B_rxm2xn2.shape
    N, m = x_Nxm.shape
    check_shapes((m, n1 * n2), (m1, n1), (m2, n2))
    x_Nxm1xm2 = x_Nxm.reshape(N, m1, m2)
    orders = _orders(m, (m1, n1), (m2, n2), r)
    f32 = jnp.float32
    if orders["b_first"] <= orders["a_first"]:
        t = jnp.einsum("nab,kbq->nkaq", x_Nxm1xm2, B_rxm2xn2, preferred_element_type=f32)
        y = jnp.einsum(
            "nkaq,kap->npq", t.astype(x_Nxm.dtype), A_rxm1xn1, preferred_element_type=f32
        )
    else:
        t = jnp.einsum("nab,kap->nkpb", x_Nxm1xm2, A_rxm1xn1, preferred_element_type=f32)
        y = jnp.einsum(
            "nkpb,kbq->npq", t.astype(x_Nxm.dtype), B_rxm2xn2, preferred_element_type=f32
        )
    return y.reshape(N, n1 * n2).astype(x_Nxm.dtype)


def materialise(A_rxm1xn1: Any, B_rxm2xn2: Any) -> np.ndarray:
    """sum_k kron(A_k, B_k) as a dense numpy matrix (tests and reconstruction errors)."""
    A, B = np.asarray(A_rxm1xn1), np.asarray(B_rxm2xn2)
    return np.asarray(sum(np.kron(a, b) for a, b in zip(A, B)))


def relative_error(W_mxn: Any, A_rxm1xn1: Any, B_rxm2xn2: Any) -> float:
    """||W - sum_k A_k kron B_k||_F / ||W||_F, in float64."""
    W = np.asarray(W_mxn, np.float64)
    diff = W - materialise(np.asarray(A_rxm1xn1, np.float64), np.asarray(B_rxm2xn2, np.float64))
    return float(np.linalg.norm(diff) / np.linalg.norm(W))


# --- initialisations -------------------------------------------------------------------------


def rearrange(W_mxn: Any, a_shape: Shape, b_shape: Shape) -> np.ndarray:
    """R (m1 n1 x m2 n2): row i1 n1 + j1 is block (i1, j1) of W (m2 x n2), flattened row-major."""
    W = np.asarray(W_mxn)
    check_shapes(W.shape, a_shape, b_shape)
    (m1, n1), (m2, n2) = a_shape, b_shape
    return W.reshape(m1, m2, n1, n2).transpose(0, 2, 1, 3).reshape(m1 * n1, m2 * n2)


def numerical_rank(s: np.ndarray, shape: tuple[int, int]) -> int:
    """Singular values above max(shape) * eps * s_max (numpy.linalg.matrix_rank's threshold)."""
    if s.size == 0 or s[0] == 0:
        return 0
    return int(np.sum(s > max(shape) * np.finfo(np.float64).eps * s[0]))


def van_loan(
    W_mxn: Any, a_shape: Shape, b_shape: Shape, terms: int
) -> tuple[np.ndarray, np.ndarray]:
    """(A_rxm1xn1, B_rxm2xn2): the nearest sum of `terms` Kronecker products to W (float64).

    A_k = sqrt(s_k) u_k and B_k = sqrt(s_k) v_k from the SVD of the rearrangement. Raises
    KronRankError when `terms` exceeds the rank of the rearrangement (the extra terms would be 0).
    """
    check_terms(terms, a_shape, b_shape)
    R = rearrange(np.asarray(W_mxn, np.float64), a_shape, b_shape)
    u, s, vt = np.linalg.svd(R, full_matrices=False)
    rank = numerical_rank(s, R.shape)
    if terms > rank:
        raise KronRankError(
            f"{terms} Kronecker terms exceed the rank {rank} of the {R.shape[0]}x{R.shape[1]} "
            f"rearrangement of this {W_mxn.shape[0]}x{W_mxn.shape[1]} matrix"
        )
    root = np.sqrt(s[:terms])
    A = (u[:, :terms] * root).T.reshape(terms, *a_shape)
    B = (vt[:terms].T * root).T.reshape(terms, *b_shape)
    return A, B


def prune(W_mxn: Any, a_shape: Shape, b_shape: Shape, terms: int) -> tuple[np.ndarray, np.ndarray]:
    """(A_rxm1xn1, B_rxm2xn2): term k keeps one entry of every m2 x n2 block of W and zeroes the rest.

    With (p, q) = divmod(k, n2): A_k[i, j] = W[i m2 + p, j n2 + q] (a strided sub-matrix of W) and
    B_k = the one-hot m2 x n2 matrix at (p, q), so A_k kron B_k is W with every entry outside rows
    p mod m2 and columns q mod n2 set to 0. The original system used B = (0, 1) on one axis of length 2:
    "50% deterministic (either pick even or odd rows) pruning"; here B = 2x1 and r = 1 keeps the
    even rows (p = 0), r = 2 adds the odd rows (p = 1) and so gives W back exactly. In general
    r terms keep r / (m2 n2) of the entries; r <= m2 n2.
    """
    check_terms(terms, a_shape, b_shape)
    W = np.asarray(W_mxn)
    check_shapes(W.shape, a_shape, b_shape)
    m2, n2 = b_shape
    A = np.empty((terms, *a_shape), W.dtype)
    B = np.zeros((terms, m2, n2), W.dtype)
    for k in range(terms):
        p, q = divmod(k, n2)
        A[k] = W[p::m2, q::n2]
        B[k, p, q] = 1.0
    return A, B


def factor_std(std: float, terms: int) -> float:
    """Std of each factor's entries so that sum_k A_k kron B_k has entries of std `std`."""
    return (std * std / terms) ** 0.25


def random_factors(
    rng: np.random.Generator, a_shape: Shape, b_shape: Shape, terms: int, std: float
) -> tuple[np.ndarray, np.ndarray]:
    """Normal factors (the original system's random init) scaled by `factor_std`."""
    check_terms(terms, a_shape, b_shape)
    s = factor_std(std, terms)
    A = rng.normal(0.0, s, (terms, *a_shape))
    B = rng.normal(0.0, s, (terms, *b_shape))
    return A, B


def factorise(
    W_mxn: Any, a_shape: Shape, b_shape: Shape, terms: int, init: str, rng=None, std: float = 0.02
) -> tuple[np.ndarray, np.ndarray]:
    """Factors of W by `init` (one of INITS); `rng` and `std` are for "random"."""
    if init == "vanloan":
        return van_loan(W_mxn, a_shape, b_shape, terms)
    if init == "prune":
        return prune(W_mxn, a_shape, b_shape, terms)
    if init == "random":
        return random_factors(rng, a_shape, b_shape, terms, std)
    raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")


# --- the factorised SwiGLU MLP ---------------------------------------------------------------


def mlp_shapes(
    emb_dim: int, hidden_dim: int, b_shape: Shape | None
) -> dict[str, tuple[Shape, Shape]]:
    """Factor shapes of the D x F gate and up matrices and of the F x D down matrix.

    `b_shape` is the second factor of gate/up (None: balanced); down uses its transpose, so both
    factorise the embed and hidden axes the same way.
    """
    (d1, f1), (d2, f2) = factor_shapes(emb_dim, hidden_dim, b_shape)
    return {"gate_up": ((d1, f1), (d2, f2)), "down": ((f1, d1), (f2, d2))}


def mlp_b_shape(factor: str) -> Shape | None:
    """model.kron_factor ('' or 'm2xn2') -> the gate/up second factor shape or None."""
    return parse_factor(factor) if factor else None


def mlp_param_count(emb_dim: int, hidden_dim: int, terms: int, factor: str = "") -> dict:
    """Parameters of one dense and one Kronecker SwiGLU MLP."""
    shapes = mlp_shapes(emb_dim, hidden_dim, mlp_b_shape(factor))
    kron = 2 * param_count(*shapes["gate_up"], terms) + param_count(*shapes["down"], terms)
    return {"dense": 3 * emb_dim * hidden_dim, "kronecker": kron}


def mlp_flops_per_token(emb_dim: int, hidden_dim: int, terms: int, factor: str = "") -> int:
    """Forward matmul FLOPs of one Kronecker SwiGLU MLP per token (dense: 2 * 3 D F)."""
    shapes = mlp_shapes(emb_dim, hidden_dim, mlp_b_shape(factor))
    return 2 * apply_flops(*shapes["gate_up"], terms) + apply_flops(*shapes["down"], terms)


def dense_mlp_weights(params: dict) -> tuple[np.ndarray, np.ndarray]:
    """(gate_up Dx2xF, down FxD) materialised from a KronMlp's parameters."""
    gate = materialise(params["gate_up_a"][0], params["gate_up_b"][0])
    up = materialise(params["gate_up_a"][1], params["gate_up_b"][1])
    down = materialise(params["down_a"], params["down_b"])
    return np.stack([gate, up], axis=1), down
