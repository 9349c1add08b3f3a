"""Batches and cost signal a study can trust: desynchronised episodes, full-episode statistics,
the per-episode cost signal of the multiplier, cheap resets, and diverged runs flagged."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from brax.envs.base import Env, State
from helpers import fresh_rng, fresh_seed

import envs
from shapo_jax.rollout import (
    init_tracker,
    init_window,
    push_window,
    recent_episodes,
    reset_batch,
    rollout,
    start_rollout,
    summarize_rollout,
    track_step,
)
from shapo_jax.training import TrainConfig, make_train, stack_hyperparameters

# ----- the tracker against a NumPy loop ------------------------------------------------------

def numpy_episodes(rewards, costs, dones, partial):
    """Reference: the full episodes (not started part-way) that end, as (ret, cost, len)."""
    steps, num_envs = rewards.shape
    ended = []
    running = np.zeros((num_envs, 3))
    partial = partial.copy()
    for t in range(steps):
        running += np.stack([rewards[t], costs[t], np.ones(num_envs)], axis=1)
        for i in np.flatnonzero(dones[t]):
            if not partial[i]:
                ended.append(running[i].copy())
            running[i] = 0.0
            partial[i] = 0
    return np.array(ended).reshape(-1, 3)


def test_tracker_counts_only_full_episodes():
    rng = fresh_rng()
    steps, num_envs = 60, 9
    rewards = rng.normal(size=(steps, num_envs)).astype(np.float32)
    costs = (rng.random((steps, num_envs)) < 0.2).astype(np.float32)
    dones = (rng.random((steps, num_envs)) < 0.08).astype(np.float32)
    partial = (rng.random(num_envs) < 0.5).astype(np.float32)
    tracker = start_rollout(init_tracker(num_envs, jnp.asarray(partial)))
    for t in range(steps):
        tracker = track_step(tracker, rewards[t], costs[t], dones[t])
    want = numpy_episodes(rewards, costs, dones, partial)
    got = summarize_rollout(tracker)
    assert int(got.episodes_completed) == len(want)
    assert len(want) > 5, "too few episodes to test anything"
    np.testing.assert_allclose(
        [float(got.episode_return), float(got.episode_cost), float(got.episode_length)],
        want.mean(axis=0), rtol=1e-5)


def test_window_uses_the_latest_update_or_the_window_when_few_episodes():
    rng = fresh_rng()
    size, min_count = 4, 5
    window = init_window(size)
    history = []
    for _ in range(12):
        count = int(rng.integers(0, 9))
        cost = float(rng.random() * count)
        tracker = init_tracker(3).replace(
            rollout_episodes=jnp.asarray([count, 0, 0], jnp.float32),
            rollout_cost=jnp.asarray([cost, 0, 0], jnp.float32),
            rollout_return=jnp.asarray([2 * cost, 0, 0], jnp.float32),
            rollout_length=jnp.asarray([10.0 * count, 0, 0], jnp.float32))
        window = push_window(window, tracker)
        history.append((count, cost))
        got = recent_episodes(window, summarize_rollout(tracker), min_count)
        counts, sums = (np.array(x[-size:], dtype=float) for x in zip(*history, strict=True))
        if count >= min_count:
            want = cost / count
        elif counts.sum() > 0:
            want = sums.sum() / counts.sum()
        else:
            want = np.nan
        np.testing.assert_allclose(float(got.episode_cost), want, rtol=1e-5)


# ----- desynchronised episodes ----------------------------------------------------------

SMALL = dict(env="TinyHazardNav", num_envs=64, rollout_length=20, num_minibatches=2,
             update_epochs=1, cost_limit=2.0)


@functools.cache
def tiny_run(random_start: bool, updates: int = 8):
    config = TrainConfig(**SMALL, random_episode_start=random_start)
    trainer = make_train(config, envs.make("TinyHazardNav"))
    state = jax.jit(trainer.init)(jax.random.PRNGKey(fresh_seed()))
    final, metrics = jax.jit(lambda s: trainer.run(s, updates))(state)
    return state, final, {k: np.asarray(v) for k, v in metrics.items()}


def test_random_start_spreads_the_episodes_and_lockstep_does_not():
    state, _, metrics = tiny_run(True)
    steps = np.asarray(state.env_state.info["steps"])
    assert steps.min() >= 0 and steps.max() < 50 and len(np.unique(steps)) > 25
    np.testing.assert_array_equal(np.asarray(state.tracker.partial), steps > 0)
    # After the first episode length (50 steps = 2.5 updates) full episodes end in every
    # update: about num_envs * rollout_length / 50 = 25.6 of them.
    completed = metrics["episodes_completed"][3:]
    assert np.all(completed > 10) and np.all(completed < 45), completed
    _, _, lockstep = tiny_run(False)
    steps_per_update = lockstep["episodes_completed"]
    assert set(np.unique(steps_per_update)) <= {0.0, 64.0}  # all at once, or none
    assert steps_per_update[0] == 0 and steps_per_update.max() == 64


def test_desynchronised_episode_statistics_are_full_episodes():
    _, _, metrics = tiny_run(True)
    lengths = metrics["episode_length"]
    finite = np.isfinite(lengths)
    # TinyHazardNav never terminates: every full episode lasts exactly 50 steps.
    assert finite[3:].all() and np.all(lengths[finite] == 50.0), lengths
    assert np.isnan(metrics["episode_return"][0])  # no full episode can end in 20 steps


def test_each_finished_env_gets_a_fresh_state_even_twice_in_one_rollout():
    env = envs.make("TinyHazardNav", episode_length=4)
    num_envs, steps = 8, 12
    reset_key, rollout_key = jax.random.split(jax.random.PRNGKey(fresh_seed()))
    state = reset_batch(env, reset_key, num_envs)

    def policy(obs, key):
        return jnp.zeros((obs.shape[0], 2)), jnp.zeros(obs.shape[0])

    _, tracker, traj = jax.jit(lambda s, t, k: rollout(env, policy, s, t, k, steps))(
        state, init_tracker(num_envs), rollout_key)
    done = np.asarray(traj.done)
    obs = np.asarray(traj.obs)
    assert done.sum(axis=0).min() >= 2  # every env finished at least twice
    for i in range(num_envs):
        starts = [obs[t + 1, i] for t in np.flatnonzero(done[:-1, i])]
        assert len({tuple(np.round(s, 6)) for s in starts}) == len(starts), i
    # Start states differ between envs too (one fresh state each from the rollout's pool).
    first = obs[4]
    assert len({tuple(np.round(s, 6)) for s in first}) == num_envs


# ----- the per-episode cost signal on a terminating task ---------------------------------

class FallingTask(Env):
    """Falls (cost 1, termination) with probability `rate` per step, else costs nothing: an
    episode's cost is its one fall or zero, whatever its length."""

    rate = 0.05

    @property
    def observation_size(self) -> int:
        return 2

    @property
    def action_size(self) -> int:
        return 1

    @property
    def backend(self) -> str:
        return "jax"

    def reset(self, rng: jax.Array) -> State:
        zero = jnp.zeros(())
        return State(pipeline_state=None, obs=jnp.zeros(2), reward=zero, done=zero,
                     metrics={}, info={"cost": zero, "rng": rng})

    def step(self, state: State, action: jax.Array) -> State:
        rng, key = jax.random.split(state.info["rng"])
        fall = (jax.random.uniform(key) < self.rate).astype(jnp.float32)
        obs = jnp.stack([fall, jnp.tanh(action[0])])
        return state.replace(obs=obs, reward=1.0 - fall, done=fall,
                             info={**state.info, "cost": fall, "rng": rng})


@pytest.mark.parametrize("estimator", ["recent_episodes", "rate"])
def test_the_multiplier_sees_the_cost_per_episode_on_a_terminating_task(estimator):
    env = envs.TimeLimit(FallingTask(), 100)
    config = TrainConfig(env="TinyHazardNav", num_envs=64, rollout_length=25,
                         num_minibatches=1, update_epochs=1, algo="ppo_lag", cost_limit=0.5,
                         cost_estimator=estimator, episode_min_count=16)
    trainer = make_train(config, env)
    state = trainer.init(jax.random.PRNGKey(fresh_seed()))
    _, metrics = jax.jit(lambda s: trainer.run(s, 12))(state)
    estimate = np.asarray(metrics["episode_cost_estimate"])[4:]
    # P(fall within 100 steps) = 1 - 0.95^100 = 0.994: an episode's cost is <= 1, about 0.99.
    if estimator == "recent_episodes":
        np.testing.assert_array_equal(estimate, np.asarray(metrics["episode_cost"])[4:])
        assert np.all(estimate <= 1.0) and np.all(estimate > 0.9), estimate
    else:  # cost per step x 100 steps: 5 "falls per episode", what 0.1's default reported
        assert np.all(estimate > 3.0), estimate


# ----- diverged runs -----------------------------------------------------------------------

def test_a_diverged_member_is_flagged_frozen_and_leaves_the_others_bit_for_bit():
    config = TrainConfig(**SMALL, algo="shapo_ppo_lag")
    trainer = make_train(config, envs.make("TinyHazardNav"), vmap_axis_name="members")
    seed = fresh_seed()
    healthy = config.hyperparameters()
    broken = healthy.replace(actor_lr=jnp.float32(1e4))
    init = jax.jit(jax.vmap(trainer.init))
    run = jax.jit(jax.vmap(lambda s, h: trainer.run(s, 6, h), axis_name="members"))

    def train(hps):
        keys = jnp.stack([jax.random.PRNGKey(seed)] * len(hps))
        hps = stack_hyperparameters(hps)
        return run(init(keys, hps), hps)

    mixed, mixed_metrics = train([healthy, broken])
    alone, alone_metrics = train([healthy, healthy])
    flags = np.asarray(mixed_metrics["diverged"])
    assert flags[0].max() == 0 and flags[1].max() == 1 and flags[1, -1] == 1
    first = int(np.argmax(flags[1]))
    for key in ("episode_cost", "cumulative_cost", "lagrange_multiplier", "episode_cost_estimate"):
        assert np.all(np.isnan(np.asarray(mixed_metrics[key])[1, first:])), key  # never 0
    # The healthy member is the same bit for bit as beside a healthy twin.
    for a, b in zip(jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda x: x[0], mixed)),
                    jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda x: x[0], alone)),
                    strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for key, value in alone_metrics.items():
        np.testing.assert_array_equal(np.asarray(mixed_metrics[key])[0], np.asarray(value)[0])
    # The diverged member keeps its last finite state, and evaluates to no figure at all.
    broken_state = jax.tree_util.tree_map(lambda x: x[1], mixed)
    for leaf in jax.tree_util.tree_leaves(broken_state.learner):
        assert np.all(np.isfinite(np.asarray(leaf)))
    result = trainer.evaluate(broken_state, jax.random.fold_in(jax.random.PRNGKey(seed), 1))
    assert np.isnan(float(result.episode_return)) and np.isnan(float(result.episode_cost))


def test_the_sweep_reports_diverged_runs_and_plots_leave_them_out(tmp_path, capsys):
    from shapo_jax.experiments import read_table
    from shapo_jax.experiments.cli import plot_main, sweep_main

    out = tmp_path / "sweep"
    argv = ["--algos", "shapo_ppo_lag", "--envs", "TinyHazardNav", "--actor-lr", "0.0003",
            "10000", "--seeds", "2", "--total-steps", "3200", "--num-envs", "16",
            "--set", "rollout_length=50", "--set", "log_every_steps=800",
            "--set", "eval_every=2", "--set", "eval_envs=4", "--set", "update_epochs=1",
            "--set", "num_minibatches=2", "--out", str(out)]
    assert sweep_main(argv) == 0
    captured = capsys.readouterr()
    assert "diverged" in captured.err
    result = __import__("json").loads(captured.out)
    rows = read_table(out)
    broken = {r["run_id"] for r in rows if r["actor_lr"] == 10000}
    assert set(result["diverged_runs"]) == broken and len(broken) == 2
    for row in rows:
        if row["run_id"] in broken and row["diverged"] == 1.0:
            for column in ("episode_cost", "cumulative_cost", "eval_cost", "episode_return"):
                assert np.isnan(row[column]), (column, row[column])  # empty cells, never 0
        if row["run_id"] not in broken:
            assert row["diverged"] == 0.0 and np.isfinite(row["cumulative_cost"])
    with pytest.warns(UserWarning, match="2 diverged run"):
        assert plot_main([str(out), "--out", str(tmp_path / "figures"), "--formats", "png"]) == 0
    import csv

    with open(tmp_path / "figures" / "summary.csv") as handle:
        summary = list(csv.DictReader(handle))
    assert [float(s["actor_lr"]) for s in summary] == [0.0003]  # the diverged setting is gone
    assert summary[0]["seeds"] == "2" and summary[0]["env_steps"] == "3200"
