"""Linear probes recover a planted linear code of the Bayes posterior, and only chance from noise."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from gssm_jax.config import four_graph
from gssm_jax.gssm import posterior, sample
from gssm_jax.gssm.graph import parse_graph
from gssm_jax.gssm.kernels import as_device_tables, draw_kernels
from gssm_jax.probing import fit


def test_planted_signal_reaches_the_ceiling_and_noise_stays_at_chance():
    graph = parse_graph(four_graph(alpha_x=0.5, alpha_z=0.3))  # ceilings 0.6-0.85: room below
    tables = as_device_tables(draw_kernels(graph, 0))
    states, tokens = sample.sample_hidden_and_tokens(graph, tables, 1, np.arange(400), 64)
    marg = posterior.filtering_marginals(graph, tables, tokens)
    post_KxNxC = np.stack([np.asarray(m)[:, 1:].reshape(-1, 4) for m in marg])
    y_KxN = np.asarray(states)[:, 1:].reshape(-1, 4).T
    rng = np.random.default_rng(0)
    rows = y_KxN.shape[1]
    # layer 0: a random linear code of the posterior (what a perfect causal reader knows), plus
    # a little noise; layer 1: noise only
    code = post_KxNxC.transpose(1, 0, 2).reshape(rows, -1) @ rng.normal(size=(16, 24))
    planted = code + 0.01 * rng.normal(size=(rows, 24))
    x_LxNxD = jnp.asarray(np.stack([planted, rng.normal(size=(rows, 24))]), jnp.float32)
    n_train = rows * 3 // 4  # 300 of the 400 sequences
    train, test = slice(0, n_train), slice(n_train, None)
    x_train, x_test = fit.standardise(x_LxNxD[:, train], x_LxNxD[:, test])
    settings = fit.ProbeSettings(steps=300, batch=2048)
    probes = fit.fit(x_train, y_KxN[:, train], graph.hidden_dims, settings)
    mask = fit.class_mask(graph.hidden_dims)
    s = fit.score(
        probes, x_test, jnp.asarray(y_KxN[:, test]), jnp.asarray(post_KxNxC[:, test]), mask
    )
    bayes = fit.bayes_scores(y_KxN[:, test], post_KxNxC[:, test], y_KxN[:, train])
    acc = np.asarray(s.accuracy)
    assert np.all(bayes["ceiling"] < 0.9) and np.all(bayes["ceiling"] > bayes["chance"] + 0.1)
    np.testing.assert_array_less(bayes["ceiling"] - 0.02, acc[0])  # planted: at the ceiling
    np.testing.assert_array_less(np.abs(acc[1] - bayes["chance"]), 0.05)  # noise: chance
    xent = np.asarray(s.xent_posterior)
    np.testing.assert_array_less(xent[0], bayes["posterior_entropy"] + 0.25)
    np.testing.assert_array_less(bayes["posterior_entropy"] + 0.25, xent[1])


def test_bayes_scores_and_padded_classes():
    y_KxN = np.array([[0, 1, 1, 2], [0, 0, 1, 0]])
    post = np.zeros((2, 4, 3))
    post[0, np.arange(4), [0, 1, 2, 2]] = 1.0  # argmax right 3 of 4
    post[1, :, :2] = 0.5  # ties: argmax 0, right 3 of 4; entropy log 2
    scores = fit.bayes_scores(y_KxN, post, train_y_KxN=np.array([[2, 2, 1, 0], [1, 1, 1, 0]]))
    np.testing.assert_allclose(scores["ceiling"], [0.75, 0.75])
    np.testing.assert_allclose(scores["chance"], [0.25, 0.25])  # majority 2 and 1 on train
    np.testing.assert_allclose(scores["posterior_entropy"], [0.0, np.log(2)])
    mask = np.asarray(fit.class_mask((3, 2)))
    np.testing.assert_array_equal(mask, [[True, True, True], [True, True, False]])


def test_minibatches_cover_every_row_each_epoch():
    idx = fit.minibatches(10, fit.ProbeSettings(steps=7, batch=4, seed=3))
    assert idx.shape == (7, 4)
    flat = idx.reshape(-1)
    for epoch in range(2):
        assert sorted(flat[10 * epoch : 10 * epoch + 10]) == list(range(10))
    assert fit.minibatches(3, fit.ProbeSettings(steps=2, batch=8)).shape == (2, 3)
