"""Rollout, episode bookkeeping, action repeat and running observation statistics, each
against a plain Python/NumPy reference."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from brax.envs.base import Env, State
from helpers import fresh_rng, fresh_seed

import envs
from envs.wrappers import TimeLimit, WithCost
from shapo_jax.rollout import (
    init_statistics,
    init_tracker,
    normalize,
    reset_batch,
    rollout,
    step_with_repeat,
    summarize_episodes,
    track_step,
    update_statistics,
)

TIME_LIMIT = 5


class CounterEnv(Env):
    """A deterministic test task whose whole state is its observation [count, length, marker].

    Reset draws the episode length (2..7) and a marker from the key. Each step counts up;
    reward = (count + 1) * action_0 + marker, cost = |action_1| on even counts, and the
    episode terminates when count reaches length (lengths 6 and 7 hit the time limit first).
    """

    @property
    def observation_size(self) -> int:
        return 3

    @property
    def action_size(self) -> int:
        return 2

    @property
    def backend(self) -> str:
        return "jax"

    def reset(self, rng: jax.Array) -> State:
        length_key, marker_key = jax.random.split(rng)
        length = jax.random.randint(length_key, (), 2, 8).astype(jnp.float32)
        marker = jax.random.uniform(marker_key, ())
        obs = jnp.stack([jnp.zeros(()), length, marker])
        zero = jnp.zeros(())
        return State(pipeline_state=obs, obs=obs, reward=zero, done=zero, info={"cost": zero})

    def step(self, state: State, action: jax.Array) -> State:
        count, length, marker = state.pipeline_state
        count = count + 1.0
        reward = count * action[0] + marker
        cost = jnp.where(count % 2 == 0, jnp.abs(action[1]), 0.0)
        done = (count >= length).astype(jnp.float32)
        obs = jnp.stack([count, length, marker])
        info = dict(state.info)
        info["cost"] = cost
        return state.replace(pipeline_state=obs, obs=obs, reward=reward, done=done, info=info)


def counter_env() -> Env:
    return TimeLimit(CounterEnv(), TIME_LIMIT)


def uniform_policy(obs: jax.Array, key: jax.Array):
    action = jax.random.uniform(key, (obs.shape[0], 2), minval=-1.0, maxval=1.0)
    return action, jnp.zeros(obs.shape[0])


def index(tree, n):
    return jax.tree_util.tree_map(lambda x: x[n], tree)


def test_rollout_matches_one_env_at_a_time_loop():
    env = counter_env()
    num_envs, num_steps = 4, 24
    single_step = jax.jit(env.step)
    template = env.reset(jax.random.PRNGKey(0))
    boundaries = {"terminated": 0, "truncated": 0}
    runs = {
        repeat: jax.jit(
            lambda state, tracker, key, repeat=repeat: rollout(
                env, uniform_policy, state, tracker, key, num_steps, action_repeat=repeat
            )
        )
        for repeat in (1, 2)
    }
    for repeat in (1, 1, 2):
        run = runs[repeat]
        key = jax.random.PRNGKey(fresh_seed())
        start = reset_batch(env, key, num_envs)
        final, tracker, traj = run(start, init_tracker(num_envs), jax.random.fold_in(key, 1))
        traj = jax.tree_util.tree_map(np.asarray, traj)

        for n in range(num_envs):
            state = index(start, n)
            running = [0.0, 0.0, 0]
            episodes = []
            for t in range(num_steps):
                np.testing.assert_array_equal(traj.obs[t, n], state.obs)
                nxt, reward, cost = state, 0.0, 0.0
                for _ in range(repeat):
                    nxt = single_step(nxt, jnp.asarray(traj.action[t, n]))
                    reward, cost = reward + float(nxt.reward), cost + float(nxt.info["cost"])
                    if nxt.done:
                        break
                np.testing.assert_allclose(traj.reward[t, n], reward, rtol=1e-5, atol=1e-6)
                np.testing.assert_allclose(traj.cost[t, n], cost, rtol=1e-5, atol=1e-6)
                # next_obs is the true next observation, the terminal one on a done step.
                np.testing.assert_array_equal(traj.next_obs[t, n], nxt.obs)
                done = bool(nxt.done)
                truncated = bool(nxt.info["truncation"])
                assert traj.done[t, n] == done
                assert traj.terminated[t, n] == (done and not truncated)
                count, length, _ = np.asarray(nxt.obs)
                assert done == (count >= min(length, TIME_LIMIT))
                assert truncated == (done and length > TIME_LIMIT)
                running = [running[0] + reward, running[1] + cost, running[2] + 1]
                if done:
                    boundaries["truncated" if truncated else "terminated"] += 1
                    episodes.append(running)
                    running = [0.0, 0.0, 0]
                    reset_obs = traj.obs[t + 1, n] if t + 1 < num_steps else np.asarray(
                        final.obs[n])
                    # Auto-reset exactly at done: a fresh episode starts at count 0.
                    assert reset_obs[0] == 0.0 and 2 <= reset_obs[1] <= 7
                    state = template.replace(
                        pipeline_state=jnp.asarray(reset_obs), obs=jnp.asarray(reset_obs)
                    )
                else:
                    state = nxt
            np.testing.assert_array_equal(final.obs[n], state.obs)
            assert int(tracker.completed[n]) == len(episodes)
            np.testing.assert_allclose(tracker.running_return[n], running[0], rtol=1e-5,
                                       atol=1e-5)
            np.testing.assert_allclose(tracker.running_cost[n], running[1], rtol=1e-5, atol=1e-6)
            assert tracker.running_length[n] == running[2]
            assert episodes, "the test horizon must complete an episode in every env"
            last = episodes[-1]
            np.testing.assert_allclose(tracker.last_return[n], last[0], rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(tracker.last_cost[n], last[1], rtol=1e-5, atol=1e-6)
            assert tracker.last_length[n] == last[2]

        summary = summarize_episodes(tracker)
        np.testing.assert_allclose(summary.episode_return, np.mean(tracker.last_return),
                                   rtol=1e-5)
        np.testing.assert_allclose(summary.episode_cost, np.mean(tracker.last_cost), rtol=1e-5)
        assert int(summary.episodes_completed) == int(np.sum(tracker.completed))
    assert boundaries["terminated"] > 0 and boundaries["truncated"] > 0, boundaries


def test_summary_averages_only_envs_with_a_completed_episode():
    tracker = init_tracker(3)
    summary = summarize_episodes(tracker)
    assert np.isnan(summary.episode_return) and np.isnan(summary.episode_cost)
    tracker = track_step(tracker, jnp.array([1.0, 2.0, 3.0]), jnp.array([0.5, 0.0, 1.0]),
                         jnp.array([0.0, 1.0, 0.0]))
    tracker = track_step(tracker, jnp.array([1.0, 2.0, 3.0]), jnp.array([0.5, 0.0, 1.0]),
                         jnp.array([1.0, 0.0, 0.0]))
    summary = summarize_episodes(tracker)
    # env 0: return 2, cost 1, length 2; env 1: return 2, cost 0, length 1; env 2 still running.
    np.testing.assert_allclose(summary.episode_return, 2.0)
    np.testing.assert_allclose(summary.episode_cost, 0.5)
    np.testing.assert_allclose(summary.episode_length, 1.5)
    np.testing.assert_allclose(tracker.running_return, [0.0, 2.0, 6.0])
    assert int(summary.episodes_completed) == 2


def test_step_with_repeat_sums_over_repeats_and_stops_after_done():
    env = counter_env()
    repeat = 3
    num_envs = 16
    seed = fresh_seed()
    start = reset_batch(env, jax.random.PRNGKey(seed), num_envs)
    # Start the envs at different counts so that some finish on the first, second or third
    # repeat and some not at all.
    rng = np.random.default_rng(seed)
    counts = jnp.asarray(rng.integers(0, 5, num_envs), jnp.float32)
    lengths = start.obs[:, 1]
    counts = jnp.minimum(counts, jnp.minimum(lengths, TIME_LIMIT) - 1)
    obs = start.obs.at[:, 0].set(counts)
    info = dict(start.info)
    info["steps"] = counts.astype(jnp.int32)
    start = start.replace(pipeline_state=obs, obs=obs, info=info)
    action = jnp.asarray(rng.uniform(-1, 1, (num_envs, 2)), jnp.float32)

    state, reward, cost = jax.jit(
        lambda s, a: step_with_repeat(env, s, a, repeat)
    )(start, action)

    single_step = jax.jit(env.step)
    finished_early = 0
    for n in range(num_envs):
        ref = index(start, n)
        total_reward = total_cost = 0.0
        for _ in range(repeat):
            ref = single_step(ref, action[n])
            total_reward += float(ref.reward)
            total_cost += float(ref.info["cost"])
            if ref.done:
                break
        else:
            assert not ref.done
        finished_early += bool(ref.done) and ref.obs[0] < counts[n] + repeat
        np.testing.assert_allclose(reward[n], total_reward, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(cost[n], total_cost, rtol=1e-5, atol=1e-6)
        # The state is frozen at the step the episode ended.
        np.testing.assert_array_equal(state.obs[n], ref.obs)
        assert state.done[n] == ref.done
        assert state.info["truncation"][n] == ref.info["truncation"]
        assert state.info["steps"][n] == ref.info["steps"]
    assert finished_early > 0, "the test must cover episodes ending before the last repeat"


def test_tiny_hazard_nav_rollout_bookkeeping():
    """The real task: 50-step time limit (truncation, never termination), episode sums."""
    env = envs.make("TinyHazardNav")
    num_envs, num_steps = 3, 60
    reset_key, rollout_key = jax.random.split(jax.random.PRNGKey(fresh_seed()))
    start = reset_batch(env, reset_key, num_envs)
    final, tracker, traj = jax.jit(
        lambda s, k: rollout(env, uniform_policy, s, init_tracker(num_envs), k, num_steps)
    )(start, rollout_key)
    done = np.asarray(traj.done)
    expected_done = np.zeros_like(done)
    expected_done[49] = 1.0
    np.testing.assert_array_equal(done, expected_done)
    np.testing.assert_array_equal(traj.terminated, 0.0)
    np.testing.assert_allclose(tracker.last_return, traj.reward[:50].sum(0), rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(tracker.last_cost, traj.cost[:50].sum(0), rtol=1e-5)
    np.testing.assert_array_equal(tracker.last_length, 50.0)
    np.testing.assert_allclose(tracker.running_return, traj.reward[50:].sum(0), rtol=1e-4,
                               atol=1e-5)
    # Reset at step 50: the new episode starts near (-1.5, 0); the terminal obs was elsewhere.
    reset_position = np.asarray(traj.obs[50, :, :2])
    assert np.all(np.abs(reset_position - np.array([-1.5, 0.0])) <= 0.2 + 1e-6)
    np.testing.assert_array_equal(traj.next_obs[:49], traj.obs[1:50])
    assert not np.allclose(traj.next_obs[49], traj.obs[50])
    assert np.all(np.asarray(final.info["steps"]) == num_steps - 50)


def test_wrappers_time_limit_and_with_cost():
    """TimeLimit: a termination on the last allowed step is not a truncation. WithCost: the
    cost function sees (state, next_state, action), and the reset cost is 0."""
    env = WithCost(
        counter_env(), lambda state, nxt, action: nxt.obs[0] * 10.0 + state.obs[0] + action[1]
    )
    state = env.reset(jax.random.PRNGKey(0))
    assert float(state.info["cost"]) == 0.0 and int(state.info["steps"]) == 0
    for length, kinds in [(3.0, [0, 0, 1]), (5.0, [0, 0, 0, 0, 1]), (7.0, [0, 0, 0, 0, 2])]:
        obs = jnp.array([0.0, length, 0.25])
        current = state.replace(pipeline_state=obs, obs=obs)
        for step, kind in enumerate(kinds):
            nxt = env.step(current, jnp.array([0.5, 0.125]))
            assert float(nxt.info["cost"]) == (step + 1) * 10.0 + step + 0.125
            assert float(nxt.done) == float(kind > 0)
            assert float(nxt.info["truncation"]) == float(kind == 2)
            assert int(nxt.info["steps"]) == step + 1
            current = nxt


# ----- running observation statistics ----------------------------------------------------


def test_running_statistics_match_numpy_over_all_batches():
    size = 4
    update = jax.jit(update_statistics)
    for _ in range(3):
        rng = fresh_rng()
        stats = init_statistics(size)
        seen = []
        # Different batch sizes and leading shapes, shifted scales: the merge formula at work.
        for shape in [(7,), (3, 5), (1,), (64,), (2, 2, 9)]:
            loc = rng.normal(size=size) * 3.0
            scale = rng.uniform(0.1, 4.0, size=size)
            batch = loc + scale * rng.normal(size=shape + (size,))
            stats = update(stats, jnp.asarray(batch, jnp.float32))
            seen.append(batch.reshape(-1, size))
            everything = np.concatenate(seen)
            assert float(stats.count) == everything.shape[0]
            np.testing.assert_allclose(stats.mean, everything.mean(0), rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(stats.variance, everything.var(0), rtol=1e-4, atol=1e-5)


def test_merge_does_not_depend_on_how_the_data_were_split():
    rng = fresh_rng()
    data = jnp.asarray(rng.normal(2.0, 3.0, size=(40, 3)), jnp.float32)
    whole = update_statistics(init_statistics(3), data)
    parts = init_statistics(3)
    for lo, hi in [(0, 1), (1, 13), (13, 14), (14, 40)]:
        parts = update_statistics(parts, data[lo:hi])
    np.testing.assert_allclose(parts.mean, whole.mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(parts.variance, whole.variance, rtol=1e-5)


def test_normalize_uses_epsilon_clips_and_is_identity_before_data():
    rng = fresh_rng()
    empty = init_statistics(3)
    # Before any data, also no clipping: raw observations pass through unchanged.
    x = jnp.asarray(rng.normal(0.0, 20.0, size=(5, 3)), jnp.float32)
    assert np.any(np.abs(x) > 10.0)
    np.testing.assert_array_equal(normalize(empty, x), x)

    data = rng.normal(1.0, 2.0, size=(50, 3))
    stats = update_statistics(empty, jnp.asarray(data, jnp.float32))
    y = rng.normal(1.0, 6.0, size=(20, 3))
    expected = np.clip((y - data.mean(0)) / np.sqrt(data.var(0) + 1e-8), -2.5, 2.5)
    got = normalize(stats, jnp.asarray(y, jnp.float32), clip=2.5)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert np.any(np.abs(expected) == 2.5)

    # A constant feature has variance 0: epsilon keeps the result finite.
    constant = update_statistics(empty, jnp.ones((10, 3)))
    out = normalize(constant, jnp.full((2, 3), 1.0 + 1e-5), clip=10.0)
    np.testing.assert_allclose(out, 1e-5 / np.sqrt(1e-8), rtol=1e-2)


def test_vmapped_rollout_with_axis_name_equals_separate_rollouts():
    """Members vmapped with a named axis reset only on steps where some member's env finished;
    each member's transitions are exactly those of its own rollout (episodes of random
    lengths, so one member often finishes while the other does not)."""
    env = counter_env()
    num_envs, num_steps = 3, 3 * TIME_LIMIT
    reset_keys, rollout_keys = jax.random.split(jax.random.PRNGKey(fresh_seed()), (2, 2))
    starts = jax.vmap(lambda k: reset_batch(env, k, num_envs))(reset_keys)

    def member(start, key, axis_name=None):
        return rollout(env, uniform_policy, start, init_tracker(num_envs), key, num_steps,
                       vmap_axis_name=axis_name)

    together = jax.jit(jax.vmap(lambda s, k: member(s, k, "members"), axis_name="members"))(
        starts, rollout_keys
    )
    separate = jax.jit(member)
    for n in range(2):
        alone = separate(index(starts, n), rollout_keys[n])
        for a, b in zip(jax.tree_util.tree_leaves(alone),
                        jax.tree_util.tree_leaves(index(together, n)), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    done = np.asarray(together[2].done)  # [member, T, env]
    assert done.sum() > 0 and not np.array_equal(done[0], done[1])
