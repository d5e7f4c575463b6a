"""Kronecker factorisation: Van Loan, prune, random, kron_apply and the Kronecker SwiGLU MLP."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gssm_jax.models import kronecker
from gssm_jax.models.configs import TransformerConfig
from gssm_jax.models.mlp import KronMlp, Mlp


def _planted(rng, a_shape, b_shape, terms):
    A = rng.normal(size=(terms, *a_shape))
    B = rng.normal(size=(terms, *b_shape))
    return kronecker.materialise(A, B), A, B


def test_van_loan_recovers_a_planted_kronecker_product():
    rng = np.random.default_rng(0)
    W, _, _ = _planted(rng, (6, 4), (3, 5), 1)
    A, B = kronecker.van_loan(W, (6, 4), (3, 5), 1)
    assert A.shape == (1, 6, 4) and B.shape == (1, 3, 5)
    assert kronecker.relative_error(W, A, B) < 1e-5


def test_van_loan_recovers_a_planted_sum_and_its_error_never_grows_with_r():
    rng = np.random.default_rng(1)
    W, _, _ = _planted(rng, (4, 6), (5, 3), 3)
    errors = [
        kronecker.relative_error(W, *kronecker.van_loan(W, (4, 6), (5, 3), r)) for r in (1, 2, 3)
    ]
    assert errors[0] > 0.1 and errors[2] < 1e-5, errors
    assert errors[0] >= errors[1] >= errors[2], errors
    # A full-rank matrix: the error falls with every term and reaches 0 at the rank bound.
    W = rng.normal(size=(12, 10))
    bound = kronecker.max_terms((3, 5), (4, 2))
    errors = [
        kronecker.relative_error(W, *kronecker.van_loan(W, (3, 5), (4, 2), r)) for r in range(1, 9)
    ]
    assert bound == 8 and all(a >= b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-5


def test_van_loan_is_the_svd_optimum():
    """The error is the tail of the rearrangement's singular values (Eckart-Young)."""
    rng = np.random.default_rng(2)
    W = rng.normal(size=(8, 9))
    s = np.linalg.svd(kronecker.rearrange(W, (4, 3), (2, 3)), compute_uv=False)
    for r in (1, 3):
        err = kronecker.relative_error(W, *kronecker.van_loan(W, (4, 3), (2, 3), r))
        np.testing.assert_allclose(err, np.sqrt(np.sum(s[r:] ** 2)) / np.linalg.norm(W), rtol=1e-9)


def test_prune_keeps_even_rows_then_odd_rows():
    rng = np.random.default_rng(3)
    W = rng.normal(size=(8, 6))
    A, B = kronecker.prune(W, (4, 6), (2, 1), 1)  # seeds/003: B = (1, 0)^T keeps the even rows
    approx = kronecker.materialise(A, B)
    np.testing.assert_array_equal(approx[0::2], W[0::2])
    np.testing.assert_array_equal(approx[1::2], 0.0)
    np.testing.assert_allclose(
        kronecker.relative_error(W, A, B) ** 2, np.sum(W[1::2] ** 2) / np.sum(W**2)
    )
    A, B = kronecker.prune(W, (4, 6), (2, 1), 2)
    np.testing.assert_array_equal(kronecker.materialise(A, B), W)
    # In general term k keeps entry divmod(k, n2) of every m2 x n2 block.
    A, B = kronecker.prune(W, (4, 3), (2, 2), 3)
    mask = np.zeros((2, 2))
    mask.flat[:3] = 1
    np.testing.assert_array_equal(kronecker.materialise(A, B), W * np.tile(mask, (4, 3)))


def test_random_factors_have_the_dense_entry_scale():
    A, B = kronecker.random_factors(np.random.default_rng(4), (32, 32), (32, 32), 2, 0.02)
    assert abs(np.std(kronecker.materialise(A, B)) / 0.02 - 1) < 0.1


@pytest.mark.parametrize("a_shape,b_shape,terms", [((4, 8), (2, 3), 2), ((2, 12), (8, 2), 3)])
def test_kron_apply_matches_the_materialised_matrix(a_shape, b_shape, terms):
    """Both contraction orders (the two cases pick different ones)."""
    rng = np.random.default_rng(5)
    A = rng.normal(size=(terms, *a_shape)).astype(np.float32)
    B = rng.normal(size=(terms, *b_shape)).astype(np.float32)
    x = rng.normal(size=(7, a_shape[0] * b_shape[0])).astype(np.float32)
    y = kronecker.kron_apply(jnp.asarray(x), jnp.asarray(A), jnp.asarray(B))
    dense = x.astype(np.float64) @ kronecker.materialise(A.astype(np.float64), B.astype(np.float64))
    np.testing.assert_allclose(np.asarray(y), dense, atol=1e-5 * np.abs(dense).max())


def test_counts_and_default_shapes():
    assert kronecker.balanced_split(64) == (8, 8) and kronecker.balanced_split(48) == (6, 8)
    assert kronecker.balanced_split(7) == (1, 7)
    assert kronecker.default_factor_shapes(64, 256) == ((8, 16), (8, 16))
    assert kronecker.param_count((8, 16), (8, 16), 2) == 512
    # b first: 2 r (m n2 + m1 n); a first: 2 r (m n1 + m2 n); dense 2 m n
    assert kronecker.apply_flops((32, 256), (2, 1), 1) == 2 * (64 * 1 + 32 * 256)
    assert kronecker.apply_flops((8, 16), (8, 16), 1) == 2 * (64 * 16 + 8 * 256)
    counts = kronecker.mlp_param_count(64, 256, 1, "2x1")
    assert counts == {"dense": 3 * 64 * 256, "kronecker": 3 * (32 * 256 + 2)}
    assert kronecker.mlp_flops_per_token(64, 256, 1, "2x1") == 3 * 2 * (64 + 32 * 256)


def test_bad_shapes_and_ranks_are_named_errors():
    W = np.zeros((8, 6))
    with pytest.raises(kronecker.KronShapeError, match="multiply to 9x6, not to the 8x6"):
        kronecker.van_loan(W, (3, 3), (3, 2), 1)
    with pytest.raises(kronecker.KronShapeError, match="does not divide the 64x256"):
        kronecker.factor_shapes(64, 256, (3, 1))
    with pytest.raises(kronecker.KronShapeError, match="ROWSxCOLS"):
        kronecker.parse_factor("2by1")
    with pytest.raises(kronecker.KronRankError, match=r"must be in \[1, 2\]"):
        kronecker.prune(W, (4, 6), (2, 1), 3)
    rng = np.random.default_rng(6)
    planted, _, _ = _planted(rng, (4, 3), (2, 2), 2)
    with pytest.raises(
        kronecker.KronRankError, match="exceed the rank 2 of the 12x4 rearrangement"
    ):
        kronecker.van_loan(planted, (4, 3), (2, 2), 3)


def _cfg(**kw):
    base = dict(
        vocab_size=8, emb_dim=16, hidden_dim=24, nb_layers=2, mlp="kronecker", init="fan_in"
    )
    return TransformerConfig(**{**base, **kw})


@pytest.mark.parametrize("factor,terms", [("", 2), ("2x1", 1), ("4x3", 3)])
def test_kron_mlp_equals_the_dense_mlp_of_its_materialised_matrices(factor, terms):
    cfg = _cfg(kron_terms=terms, kron_factor=factor)
    x = jax.random.normal(jax.random.key(0), (2, 5, 16))
    params = nn.unbox(KronMlp(cfg).init(jax.random.key(1), x)["params"])
    params = jax.tree.map(lambda p: p * 30, params)  # entries of order 1: a non-trivial check
    y = KronMlp(cfg).apply({"params": params}, x)
    gate_up, down = kronecker.dense_mlp_weights(jax.tree.map(np.asarray, params))
    dense = {"gate_up": jnp.asarray(gate_up, jnp.float32), "down": jnp.asarray(down, jnp.float32)}
    y_dense = Mlp(_cfg(mlp="dense")).apply({"params": dense}, x)
    scale = float(jnp.abs(y_dense).max())
    assert scale > 0.1
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_dense), atol=1e-5 * scale)
    n = jax.tree.reduce(lambda a, b: a + b.size, params, 0)
    assert n == kronecker.mlp_param_count(16, 24, terms, factor)["kronecker"]


def test_kron_mlp_parameters_carry_logical_axes():
    boxed = KronMlp(_cfg()).init(jax.random.key(0), jnp.zeros((1, 3, 16)))["params"]
    names = {k: v.names for k, v in boxed.items()}
    assert names == {
        "gate_up_a": (None, None, "embed", "mlp"),
        "gate_up_b": (None, None, None, None),
        "down_a": (None, "mlp", "embed"),
        "down_b": (None, None, None),
    }


def test_profile_counts_the_factorised_mlp_flops():
    from gssm_jax.config import default_config
    from gssm_jax.train import profile

    model = default_config().model
    dense = profile.flops_per_token(model, 127, 32)["forward"]
    model.mlp, model.kron_terms, model.kron_factor = "kronecker", 2, "4x1"
    factorised = profile.flops_per_token(model, 127, 32)["forward"]
    per_layer = kronecker.mlp_flops_per_token(64, 256, 2, "4x1") - 2 * 3 * 64 * 256
    assert factorised - dense == model.nb_layers * per_layer < 0
    cfg = _cfg(kron_terms=2, kron_factor="4x3")
    dense_cfg = _cfg(mlp="dense")
    counts = kronecker.mlp_param_count(16, 24, 2, "4x3")
    assert cfg.param_count() - dense_cfg.param_count() == 2 * (
        counts["kronecker"] - counts["dense"]
    )
    boxed = KronMlp(cfg).init(jax.random.key(0), jnp.zeros((1, 3, 16)))["params"]
    assert sum(p.value.size for p in boxed.values()) == counts["kronecker"]
