"""The Lagrange multiplier: projected Adam ascent and the PID Lagrangian against NumPy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from helpers import fresh_rng

from shapo_jax.update import adam_lagrange, pid_lagrange


def run(multiplier, costs, limit):
    """Apply the jitted update to a sequence of episode costs; the multiplier after each."""
    update = jax.jit(multiplier.update)
    state, out = multiplier.init(), []
    for cost in costs:
        state = update(state, jnp.float32(cost), jnp.float32(limit))
        out.append(float(state.multiplier))
    return np.array(out)


def numpy_projected_adam(init, lr, costs, limit, b1=0.9, b2=0.999, eps=1e-8):
    """Adam on the loss -lambda (J_c - d), projected to lambda >= 0, in float64."""
    lam, m, v, out = float(init), 0.0, 0.0, []
    for k, cost in enumerate(costs, start=1):
        grad = -(cost - limit)
        m = b1 * m + (1 - b1) * grad
        v = b2 * v + (1 - b2) * grad**2
        m_hat, v_hat = m / (1 - b1**k), v / (1 - b2**k)
        lam = max(0.0, lam - lr * m_hat / (np.sqrt(v_hat) + eps))
        out.append(lam)
    return np.array(out)


def numpy_pid(kp, ki, kd, init, costs, limit):
    """lambda = max(0, Kp e + Ki I + Kd max(0, J_c - J_prev)), I = max(0, I + e), e = J_c - d;
    I starts at init / Ki (so lambda starts at init) and J_prev at 0."""
    integral, previous, out = init / ki, 0.0, []
    for cost in costs:
        error = cost - limit
        integral = max(0.0, integral + error)
        derivative = max(0.0, cost - previous)
        out.append(max(0.0, kp * error + ki * integral + kd * derivative))
        previous = cost
    return np.array(out)


def test_adam_sign_cost_above_limit_raises_below_lowers():
    multiplier = adam_lagrange(init_value=1.0, learning_rate=0.05)
    above = run(multiplier, [30.0] * 5, 25.0)
    below = run(multiplier, [20.0] * 5, 25.0)
    assert np.all(np.diff(np.concatenate([[1.0], above])) > 0)
    assert np.all(np.diff(np.concatenate([[1.0], below])) < 0)


def test_adam_projection_keeps_lambda_non_negative():
    # Starting at 0 under the limit stays exactly 0.
    np.testing.assert_array_equal(run(adam_lagrange(0.0, 0.1), [3.0] * 4, 25.0), 0.0)
    # A long stretch under the limit drives lambda to the bound 0 and no further.
    values = run(adam_lagrange(0.3, 0.1), [0.0] * 10, 25.0)
    assert np.all(values >= 0.0) and values[-1] == 0.0


def test_adam_matches_numpy_adam_over_seeds():
    for _ in range(4):
        rng = fresh_rng()
        init, lr, limit = rng.uniform(0.0, 2.0), rng.uniform(0.01, 0.2), rng.uniform(5, 30)
        # Costs wander around the limit so that the projection is active at times.
        costs = limit + rng.normal(0.0, 10.0, size=12) - 3.0
        got = run(adam_lagrange(init, lr), costs, limit)
        expected = numpy_projected_adam(np.float32(init), np.float32(lr), costs, limit)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_adam_upper_bound():
    values = run(adam_lagrange(0.9, 0.5, upper_bound=1.0), [100.0] * 3, 25.0)
    np.testing.assert_array_equal(values, 1.0)


def test_pid_matches_numpy_reference_over_seeds():
    for _ in range(4):
        rng = fresh_rng()
        kp, ki, kd = rng.uniform(0.0, 0.2), rng.uniform(0.005, 0.05), rng.uniform(0.0, 0.05)
        init, limit = rng.uniform(0.0, 1.0), rng.uniform(5.0, 30.0)
        costs = np.abs(limit + rng.normal(0.0, 15.0, size=12))
        got = run(pid_lagrange(kp, ki, kd, init), costs, limit)
        expected = numpy_pid(*(float(np.float32(x)) for x in (kp, ki, kd, init)), costs, limit)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_pid_sign_and_projection():
    pid = pid_lagrange(kp=0.1, ki=0.01, kd=0.0, init_value=0.5)
    above = run(pid, [30.0] * 4, 25.0)
    assert np.all(np.diff(above) > 0) and above[0] > 0.5
    below = run(pid, [0.0] * 30, 25.0)
    assert np.all(below >= 0.0) and below[-1] == 0.0
    np.testing.assert_array_equal(run(pid_lagrange(0.1, 0.01, 0.01, 0.0), [1.0] * 4, 25.0), 0.0)


def test_jit_and_vmap_over_a_batch_of_multipliers():
    costs = jnp.array([10.0, 30.0, 25.0, 0.0], jnp.float32)
    limit = jnp.float32(25.0)
    for multiplier in (adam_lagrange(0.5, 0.1), pid_lagrange(0.1, 0.01, 0.01, 0.5)):
        single = multiplier.init()
        batch = jax.tree_util.tree_map(lambda x: jnp.stack([x] * 4), single)
        vmapped = jax.jit(jax.vmap(multiplier.update, in_axes=(0, 0, None)))(batch, costs, limit)
        for i in range(4):
            alone = multiplier.update(single, costs[i], limit)
            np.testing.assert_allclose(vmapped.multiplier[i], alone.multiplier, rtol=1e-6)
        assert vmapped.multiplier[1] > 0.5 > vmapped.multiplier[0]
