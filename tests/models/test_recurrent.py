"""Each recurrent mixer against its recurrence written here step by step: outputs and gradients
(of the parameters and the input) within 1e-5 in float32, at lengths that are and are not
multiples of Mamba's chunk size."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gssm_jax.models import recurrent
from gssm_jax.models.configs import HawkConfig, MambaConfig, MinGRUConfig, MinLSTMConfig
from gssm_jax.models.hawk import GATE_SCALE, RGLRU
from gssm_jax.models.mamba import Mamba2
from gssm_jax.models.mingru import MinGRU
from gssm_jax.models.minlstm import MinLSTM

B, D = 2, 8
SHARED = dict(vocab_size=5, emb_dim=D, nb_layers=1, init_std=0.3)
CASES = {
    "mamba": (
        Mamba2,
        MambaConfig(**SHARED, expand=2, state_dim=3, head_dim=4, conv_width=3, chunk_size=4),
    ),
    "hawk": (RGLRU, HawkConfig(**SHARED, expand=2, nb_heads=2, conv_width=3, hidden_dim=8)),
    "mingru": (MinGRU, MinGRUConfig(**SHARED, expand=2, hidden_dim=8)),
    "minlstm": (MinLSTM, MinLSTMConfig(**SHARED, expand=2, hidden_dim=8)),
}
sig, silu, softplus = jax.nn.sigmoid, jax.nn.silu, jax.nn.softplus


def over_time(step, h0, *xs_BxLx):
    """One step per position (lax.scan along axis 1): (last state, outputs stacked along 1)."""
    h, ys = jax.lax.scan(step, h0, tuple(jnp.moveaxis(x, 1, 0) for x in xs_BxLx))
    return h, jnp.moveaxis(ys, 0, 1)


def conv_steps(x_BxLx, w_Wx, b_x):
    """Causal depthwise convolution, one output at a time."""
    W, L = w_Wx.shape[0], x_BxLx.shape[1]
    outs = []
    for t in range(L):
        y = b_x
        for j in range(W):
            s = t - (W - 1) + j
            if s >= 0:
                y = y + w_Wx[j] * x_BxLx[:, s]
        outs.append(y)
    return jnp.stack(outs, axis=1)


def mamba_steps(p, x, cfg):
    H, P, N = cfg.nb_heads, cfg.head_dim, cfg.state_dim
    zu = jnp.einsum("bld,dghp->blghp", x, p["w_zu"])
    z, u = zu[:, :, 0], conv_steps(zu[:, :, 1], p["conv_u_w"], p["conv_u_b"])
    bc = conv_steps(jnp.einsum("bld,dgn->blgn", x, p["w_bc"]), p["conv_bc_w"], p["conv_bc_b"])
    u, bc = silu(u), silu(bc)
    dt = softplus(jnp.einsum("bld,dh->blh", x, p["w_dt"]) + p["dt_bias"])
    A = -jnp.exp(p["A_log"])

    def step(h, inputs):
        dt_t, u_t, bc_t = inputs
        h = jnp.exp(dt_t * A)[:, :, None, None] * h + jnp.einsum(
            "bh,bhp,bn->bhpn", dt_t, u_t, bc_t[:, 0]
        )
        return h, jnp.einsum("bhpn,bn->bhp", h, bc_t[:, 1]) + p["D"][:, None] * u_t

    _, ys = over_time(step, jnp.zeros((x.shape[0], H, P, N)), dt, u, bc)
    y = ys * silu(z)
    y = y / jnp.sqrt(jnp.mean(y**2, axis=(-2, -1), keepdims=True) + cfg.norm_eps) * p["norm"]
    return jnp.einsum("blhp,hpd->bld", y, p["w_out"])


def hawk_steps(p, x, cfg):
    ug = jnp.einsum("bld,dghk->blghk", x, p["w_in"])
    u, gate = conv_steps(ug[:, :, 0], p["conv_w"], p["conv_b"]), jax.nn.gelu(ug[:, :, 1])

    def step(h, inputs):
        u_t, gate_t = inputs
        pre = jnp.einsum("bhk,ghkj->bghj", u_t, p["gate_w"]) + p["gate_b"]
        r, i = sig(pre[:, 0]), sig(pre[:, 1])
        a = sig(p["lam"]) ** (GATE_SCALE * r)
        h = a * h + jnp.sqrt(1 - a**2) * (i * u_t)
        return h, h * gate_t

    _, ys = over_time(step, jnp.zeros(u.shape[:1] + u.shape[2:]), u, gate)
    return jnp.einsum("blhk,hkd->bld", ys, p["w_out"])


def min_steps(p, x, cfg, lstm: bool):
    g = jnp.einsum("bld,dge->blge", x, p["w_in"])

    def step(h, g_t):
        if lstm:
            f, i = sig(g_t[:, 1]), sig(g_t[:, 2])
            h = f / (f + i) * h + i / (f + i) * g_t[:, 0]
        else:
            z = sig(g_t[:, 1])
            h = (1 - z) * h + z * g_t[:, 0]
        return h, h

    _, ys = over_time(lambda h, g_t: step(h, g_t[0]), jnp.zeros((x.shape[0], cfg.inner_dim)), g)
    return ys @ p["w_out"]


STEPS = {
    "mamba": mamba_steps,
    "hawk": hawk_steps,
    "mingru": lambda p, x, cfg: min_steps(p, x, cfg, lstm=False),
    "minlstm": lambda p, x, cfg: min_steps(p, x, cfg, lstm=True),
}


@pytest.mark.parametrize(
    "family,length",
    [("mamba", 8), ("mamba", 11), ("hawk", 11), ("mingru", 11), ("minlstm", 11)],
)  # Mamba: two chunks of 4, and three with the last ragged; the others scan without chunks
def test_parallel_form_matches_the_step_by_step_recurrence(family, length):
    mixer_cls, cfg = CASES[family]
    rng = np.random.default_rng(length)
    x = rng.standard_normal((B, length, D)).astype(np.float32)
    cotangent = rng.standard_normal((B, length, D)).astype(np.float32)
    mixer = mixer_cls(cfg)
    shapes = jax.eval_shape(lambda: nn.unbox(mixer.init(jax.random.key(0), x)["params"]))
    params = jax.tree.map(  # NumPy draws: jax.random would compile a threefry kernel per shape
        lambda s: (0.5 * rng.standard_normal(s.shape)).astype(np.float32), shapes
    )

    def both(p, x):
        y, vjp = jax.vjp(lambda p, x: mixer.apply({"params": p}, x)[0], p, x)
        y_ref, vjp_ref = jax.vjp(lambda p, x: STEPS[family](p, x, cfg), p, x)
        return y, y_ref, vjp(cotangent), vjp_ref(cotangent)

    y, y_ref, grads, grads_ref = jax.jit(both)(params, x)
    scale = float(jnp.abs(y_ref).max())
    assert scale > 0.1
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5 * scale)
    flat, flat_ref = jax.tree.leaves_with_path(grads), jax.tree.leaves(grads_ref)
    assert len(flat) == len(jax.tree.leaves(params)) + 1
    for (path, g), g_ref in zip(flat, flat_ref, strict=True):
        tol = 1e-5 * float(jnp.abs(g_ref).max())
        np.testing.assert_allclose(
            g, g_ref, rtol=1e-5, atol=tol, err_msg=jax.tree_util.keystr(path)
        )


def test_linear_scan_and_conv_continue_a_state():
    """Splitting a sequence in two and carrying (state, window) gives the unsplit result."""
    rng = np.random.default_rng(0)
    a = rng.uniform(0.5, 1.0, (2, 9, 3)).astype(np.float32)
    b = rng.standard_normal((2, 9, 3)).astype(np.float32)
    whole = recurrent.linear_scan(a, b)
    first = recurrent.linear_scan(a[:, :4], b[:, :4])
    second = recurrent.linear_scan(a[:, 4:], b[:, 4:], first[:, -1])
    np.testing.assert_allclose(np.concatenate([first, second], 1), whole, rtol=1e-6)
    x, w = rng.standard_normal((2, 9, 3)), rng.standard_normal((3, 3))
    x, w, bias = x.astype(np.float32), w.astype(np.float32), np.ones(3, np.float32)
    whole, _ = recurrent.causal_conv(x, w, bias)
    first, window = recurrent.causal_conv(x[:, :4], w, bias, None, np.array([4, 4]))
    second, _ = recurrent.causal_conv(x[:, 4:], w, bias, window)
    np.testing.assert_allclose(np.concatenate([first, second], 1), whole, rtol=1e-6, atol=1e-6)
