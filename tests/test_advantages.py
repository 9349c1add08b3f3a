"""Generalised advantage estimation against a plain NumPy float64 loop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from helpers import fresh_rng

from shapo_jax.advantages import generalized_advantages

T, N = 23, 5


def numpy_gae(rewards, values, next_values, terminated, done, gamma, lam):
    """Per env, walk back in time; a boundary (done) restarts the trace, only a termination
    drops the bootstrap value (a truncation keeps V(s'))."""
    rewards, values, next_values, terminated, done = (
        np.asarray(x, np.float64) for x in (rewards, values, next_values, terminated, done)
    )
    steps, envs = rewards.shape
    advantages = np.zeros((steps, envs))
    for n in range(envs):
        following = 0.0
        for t in reversed(range(steps)):
            if done[t, n]:
                following = 0.0  # never carry the trace across an episode boundary
            bootstrap = 0.0 if terminated[t, n] else next_values[t, n]
            delta = rewards[t, n] + gamma * bootstrap - values[t, n]
            following = delta + gamma * lam * following
            advantages[t, n] = following
    return advantages, advantages + values


def random_inputs(rng: np.random.Generator, shape=(T, N)):
    rewards = rng.normal(size=shape)
    values = rng.normal(size=shape)
    next_values = rng.normal(size=shape)
    done = (rng.random(shape) < 0.2).astype(np.float64)
    # About half of the boundaries are terminations, the others truncations.
    terminated = done * (rng.random(shape) < 0.5)
    return rewards, values, next_values, terminated, done


def as_f32(*arrays):
    return [jnp.asarray(x, jnp.float32) for x in arrays]


gae_jit = jax.jit(generalized_advantages)


def test_gae_matches_numpy_reference_over_seeds():
    for _ in range(8):
        rng = fresh_rng()
        inputs = random_inputs(rng)
        gamma, lam = float(rng.uniform(0.9, 0.999)), float(rng.uniform(0.8, 1.0))
        expected_adv, expected_target = numpy_gae(*inputs, gamma, lam)
        adv, target = gae_jit(*as_f32(*inputs), gamma, lam)
        np.testing.assert_allclose(adv, expected_adv, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(target, expected_target, rtol=1e-5, atol=1e-4)


def test_truncation_bootstraps_and_termination_does_not():
    """A single-step episode ending at t = 0: A = r + gamma V(s') - V(s) only if truncated."""
    rng = fresh_rng()
    rewards, values, next_values, _, _ = random_inputs(rng, (4, 2))
    done = np.zeros((4, 2))
    done[0] = 1.0
    terminated = np.zeros((4, 2))
    terminated[0, 0] = 1.0  # env 0 terminates, env 1 is truncated at t = 0
    gamma, lam = 0.9, 0.95
    adv, _ = gae_jit(*as_f32(rewards, values, next_values, terminated, done), gamma, lam)
    # atol: differences of N(0, 1) draws rounded to float32, which may lie near 0
    np.testing.assert_allclose(adv[0, 0], rewards[0, 0] - values[0, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        adv[0, 1], rewards[0, 1] + gamma * next_values[0, 1] - values[0, 1],
        rtol=1e-5, atol=1e-6,
    )
    # The advantage at the boundary does not depend on anything after it.
    changed = rewards.copy()
    changed[1:] += 100.0
    adv2, _ = gae_jit(*as_f32(changed, values, next_values, terminated, done), gamma, lam)
    np.testing.assert_array_equal(adv2[0], adv[0])


def test_lambda_one_without_boundaries_is_discounted_return_minus_value():
    rng = fresh_rng()
    rewards, values, next_values, _, _ = random_inputs(rng)
    zeros = np.zeros_like(rewards)
    gamma = 0.97
    # Monte-Carlo return bootstrapped from the final next value; values telescope away.
    expected = np.zeros_like(rewards)
    following = next_values[-1]
    for t in reversed(range(T)):
        following = rewards[t] + gamma * following
        expected[t] = following
    # The telescoping needs V(s'_t) = V(s_(t+1)) inside the trajectory.
    next_values_consistent = np.concatenate([values[1:], next_values[-1:]], axis=0)
    adv, target = gae_jit(
        *as_f32(rewards, values, next_values_consistent, zeros, zeros), gamma, 1.0
    )
    np.testing.assert_allclose(target, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(adv, expected - values, rtol=1e-4, atol=1e-4)


def test_vmap_over_a_batch_axis_equals_separate_calls():
    rng = fresh_rng()
    batch = [random_inputs(rng) for _ in range(3)]
    stacked = [np.stack([b[i] for b in batch]) for i in range(5)]
    gammas = np.array([0.9, 0.95, 0.99], np.float32)
    lams = np.array([0.8, 0.9, 0.97], np.float32)
    vmapped = jax.jit(jax.vmap(generalized_advantages))
    adv, target = vmapped(*as_f32(*stacked), gammas, lams)
    for i, inputs in enumerate(batch):
        expected_adv, expected_target = numpy_gae(*inputs, float(gammas[i]), float(lams[i]))
        single_adv, _ = gae_jit(*as_f32(*inputs), gammas[i], lams[i])
        np.testing.assert_allclose(adv[i], single_adv, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(adv[i], expected_adv, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(target[i], expected_target, rtol=1e-5, atol=1e-4)
