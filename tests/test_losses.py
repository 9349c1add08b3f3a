"""Surrogate objectives, Lagrangian advantage, standardisation, value loss and minibatches
against NumPy formulas."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from helpers import fresh_rng

from shapo_jax.update import (
    UpdateBatch,
    clipped_surrogate,
    importance_surrogate,
    lagrangian_advantage,
    minibatches,
    standardize,
    value_loss,
)


def f32(*arrays):
    return [jnp.asarray(x, jnp.float32) for x in arrays]


def numpy_clipped_surrogate(log_prob, old_log_prob, advantage, clip):
    """Per sample: the pessimistic (smaller) of the plain and clipped ratio terms."""
    out = []
    for lp, olp, a in zip(log_prob, old_log_prob, advantage, strict=True):
        r = np.exp(np.float64(lp) - np.float64(olp))
        r_clipped = min(max(r, 1.0 - clip), 1.0 + clip)
        out.append(min(r * a, r_clipped * a))
    return np.mean(out)


def test_clipped_surrogate_matches_numpy_over_seeds():
    surrogate = jax.jit(clipped_surrogate)
    for _ in range(6):
        rng = fresh_rng()
        n = 64
        old = rng.normal(size=n)
        new = old + rng.normal(0.0, 0.4, size=n)  # ratios well outside [1 - c, 1 + c] too
        adv = rng.normal(size=n)
        clip = float(rng.uniform(0.05, 0.3))
        got = surrogate(*f32(new, old, adv), clip)
        expected = numpy_clipped_surrogate(*(np.float32(x) for x in (new, old, adv)), clip)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_clipped_surrogate_clip_sides_and_advantage_sign():
    c = 0.2
    up, down = np.log(1.5), np.log(0.5)  # ratios 1.5 and 0.5

    def single(delta, advantage):
        return float(clipped_surrogate(*f32([delta], [0.0], [advantage]), c))

    # Positive advantage: a ratio above 1 + c is clipped (no gain past it) ...
    np.testing.assert_allclose(single(up, 2.0), 1.2 * 2.0, rtol=1e-6)
    # ... a ratio below 1 - c is not (the unclipped, smaller term is kept).
    np.testing.assert_allclose(single(down, 2.0), 0.5 * 2.0, rtol=1e-6)
    # Negative advantage: the mirror image.
    np.testing.assert_allclose(single(up, -2.0), 1.5 * -2.0, rtol=1e-6)
    np.testing.assert_allclose(single(down, -2.0), 0.8 * -2.0, rtol=1e-6)
    # Inside the interval both terms agree: r A.
    np.testing.assert_allclose(single(np.log(1.1), -3.0), 1.1 * -3.0, rtol=1e-6)
    # The gradient vanishes exactly where the clipped term is selected.
    grad = jax.grad(lambda lp, a: clipped_surrogate(lp, jnp.zeros(1), a, c))
    assert float(grad(jnp.array([up], jnp.float32), jnp.array([2.0]))[0]) == 0.0
    assert float(grad(jnp.array([down], jnp.float32), jnp.array([-2.0]))[0]) == 0.0
    np.testing.assert_allclose(grad(jnp.array([down], jnp.float32), jnp.array([2.0]))[0],
                               0.5 * 2.0, rtol=1e-6)


def test_importance_surrogate_and_its_gradient_at_the_old_policy():
    rng = fresh_rng()
    old, new, adv = rng.normal(size=(3, 32))
    got = importance_surrogate(*f32(new, old, adv))
    expected = np.mean(np.exp(np.float32(new) - np.float32(old)) * np.float32(adv))
    # atol: a mean of 32 terms of size ~1 in float32, which may lie near 0 on a fresh draw
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # At pi = pi_old: value E[A], gradient A / n with respect to each log-probability.
    grad = jax.grad(importance_surrogate)(*f32(old, old, adv))
    np.testing.assert_allclose(grad, adv / 32, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        importance_surrogate(*f32(old, old, adv)), adv.mean(), rtol=1e-5, atol=1e-6
    )


def test_lagrangian_advantage_closed_form():
    rng = fresh_rng()
    for _ in range(3):
        a_r, a_c = rng.normal(size=(2, 20))
        lam = float(rng.uniform(0.0, 5.0))
        got = lagrangian_advantage(*f32(a_r, a_c), jnp.float32(lam))
        np.testing.assert_allclose(got, (a_r - lam * a_c) / (1.0 + lam), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lagrangian_advantage(*f32(a_r, a_c), 0.0), a_r, rtol=1e-6)
    # A large multiplier tends to the pure cost-avoiding advantage -A_c.
    np.testing.assert_allclose(lagrangian_advantage(*f32(a_r, a_c), 1e6), -a_c, atol=1e-4)


def test_standardize():
    for _ in range(3):
        rng = fresh_rng()
        x = rng.normal(3.0, 7.0, size=500)
        out = np.asarray(standardize(jnp.asarray(x, jnp.float32)), np.float64)
        np.testing.assert_allclose(out.mean(), 0.0, atol=1e-5)
        np.testing.assert_allclose(out.std(), 1.0, rtol=1e-5)
        np.testing.assert_allclose(out, (x - x.mean()) / x.std(), rtol=1e-4, atol=1e-4)
        centred = np.asarray(standardize(jnp.asarray(x, jnp.float32), center_only=True))
        np.testing.assert_allclose(centred.mean(), 0.0, atol=1e-4)
        np.testing.assert_allclose(centred, x - x.mean(), rtol=1e-5, atol=1e-4)
    # A constant batch standardises to zeros, not NaN.
    np.testing.assert_array_equal(standardize(jnp.full(8, 2.5)), 0.0)


def test_value_loss():
    rng = fresh_rng()
    predicted, targets = rng.normal(size=(2, 40))
    np.testing.assert_allclose(
        value_loss(*f32(predicted, targets)), np.mean((predicted - targets) ** 2), rtol=1e-5
    )
    assert float(value_loss(*f32(targets, targets))) == 0.0


def make_batch(size: int) -> UpdateBatch:
    ids = jnp.arange(size, dtype=jnp.float32)
    return UpdateBatch(
        obs=jnp.stack([ids, -ids, 2 * ids], axis=1),
        action=jnp.stack([ids, ids + 0.5], axis=1),
        old_log_prob=ids,
        advantage=ids * 3,
        reward_target=ids + 1,
        cost_target=ids - 1,
        cost=ids * 0.5,
    )


def test_minibatches_partition_the_batch():
    size, num = 48, 6
    batch = make_batch(size)
    split = jax.jit(minibatches, static_argnums=2)
    orders = []
    for seed in range(4):
        mb = split(batch, jax.random.PRNGKey(seed), num)
        assert mb.obs.shape == (num, size // num, 3)
        assert mb.action.shape == (num, size // num, 2)
        assert mb.advantage.shape == (num, size // num)
        ids = np.asarray(mb.old_log_prob).reshape(-1)
        # Every sample exactly once per epoch.
        np.testing.assert_array_equal(np.sort(ids), np.arange(size))
        # All fields are shuffled together (rows stay intact).
        np.testing.assert_array_equal(mb.obs[..., 1], -mb.old_log_prob)
        np.testing.assert_array_equal(mb.action[..., 1], mb.old_log_prob + 0.5)
        np.testing.assert_array_equal(mb.advantage, 3 * mb.old_log_prob)
        np.testing.assert_array_equal(mb.reward_target, mb.old_log_prob + 1)
        np.testing.assert_array_equal(mb.cost_target, mb.old_log_prob - 1)
        np.testing.assert_array_equal(mb.cost, 0.5 * mb.old_log_prob)
        orders.append(tuple(ids))
    assert len(set(orders)) == len(orders), "different keys must give different orders"
    assert all(order != tuple(range(size)) for order in orders)
