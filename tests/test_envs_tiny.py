"""TinyHazardNav, the task of every learning test, against its closed form in NumPy
(envs/tiny.py): the clipped velocity step, the reward (progress plus the bonus within the goal
radius, inclusive), the cost (strictly inside the hazard disc), the observation, the reset's
spawn box and the 50-step time limit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from brax.envs.base import State
from helpers import fresh_rng, fresh_seed

import envs
from envs.tiny import TinyHazardNav, TinyNavState

HAZARD_RADIUS, GOAL_RADIUS, GOAL_BONUS, STEP_SIZE = 0.5, 0.25, 0.1, 0.125


def numpy_step(position, goal, hazard, action):
    """(new position, reward, cost, observation) written from the module docstring."""
    new = position + STEP_SIZE * np.clip(action, -1.0, 1.0)
    distance = np.linalg.norm(goal - new, axis=-1)
    reward = np.linalg.norm(goal - position, axis=-1) - distance \
        + GOAL_BONUS * (distance <= GOAL_RADIUS)
    cost = (np.linalg.norm(new - hazard, axis=-1) < HAZARD_RADIUS).astype(np.float32)
    return new, reward, cost, np.concatenate([new, goal - new, hazard - new], axis=-1)


def test_step_is_the_closed_form_on_fresh_states_and_at_both_edges():
    rng = fresh_rng()
    n = 256
    env = TinyHazardNav(hazard_radius=HAZARD_RADIUS, goal_radius=GOAL_RADIUS,
                        goal_bonus=GOAL_BONUS, step_size=STEP_SIZE)
    goal = rng.uniform(-2, 2, (n, 2)).astype(np.float32)
    hazard = rng.uniform(-2, 2, (n, 2)).astype(np.float32)
    position = rng.uniform(-2, 2, (n, 2)).astype(np.float32)
    action = rng.uniform(-3, 3, (n, 2)).astype(np.float32)  # a third of them outside the box
    # Exactly on the hazard's edge (not inside: no cost) and exactly at the goal radius
    # (inside: the bonus), reached with a zero action; all offsets exact in float32.
    hazard[:4], position[:4], action[:4] = 0.0, [[0.5, 0], [0, -0.5], [-0.5, 0], [0, 0.5]], 0.0
    goal[4:8], position[4:8], action[4:8] = 1.5, [[1.25, 1.5], [1.5, 1.75]] * 2, 0.0
    hazard[4:8] = -2.0
    states = State(pipeline_state=TinyNavState(jnp.asarray(position), jnp.asarray(goal),
                                               jnp.asarray(hazard)),
                   obs=jnp.zeros((n, 6)), reward=jnp.zeros(n), done=jnp.zeros(n), metrics={},
                   info={"cost": jnp.zeros(n)})
    got = jax.jit(jax.vmap(env.step))(states, jnp.asarray(action))
    new, reward, cost, obs = numpy_step(position, goal, hazard, action)
    np.testing.assert_allclose(np.asarray(got.pipeline_state.position), new, atol=1e-6)
    np.testing.assert_allclose(np.asarray(got.reward), reward, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(got.info["cost"]), cost)
    np.testing.assert_allclose(np.asarray(got.obs), obs, atol=1e-6)
    np.testing.assert_array_equal(cost[:4], 0.0)
    np.testing.assert_allclose(reward[4:8], GOAL_BONUS)
    assert 0 < cost.mean() < 1 and 0 < (reward > GOAL_BONUS / 2).mean() < 1


def test_reset_spawns_within_the_noise_box_and_the_time_limit_truncates_at_50():
    env = envs.make("TinyHazardNav")
    keys = jax.random.split(jax.random.PRNGKey(fresh_seed()), 512)
    state = jax.jit(jax.vmap(env.reset))(keys)
    s = state.pipeline_state
    for name, centre in (("position", [-1.5, 0.0]), ("goal", [1.5, 0.0]),
                         ("hazard", [0.0, 0.0])):
        offset = np.asarray(getattr(s, name)) - centre
        # (+1e-6: centre + noise is rounded to float32; fresh seed 1947797962 put a goal
        # 0.20000005 from its centre, one float32 step near 1.7 beyond the box.)
        assert np.abs(offset).max() <= 0.2 + 1e-6 and np.abs(offset).max() > 0.18, name
        assert abs(offset.mean()) < 0.03, name  # uniform around the centre
    np.testing.assert_allclose(np.asarray(state.obs[:, 2:4]), np.asarray(s.goal - s.position))
    step = jax.jit(jax.vmap(env.step))
    dones = []
    for _ in range(50):
        state = step(state, jnp.zeros((512, 2)))
        dones.append(np.asarray(state.done))
    assert np.all(np.stack(dones[:49]) == 0) and np.all(dones[49] == 1)
    np.testing.assert_array_equal(np.asarray(state.info["truncation"]), 1.0)
