"""Benchmark of the navigation tasks: vmapped steps per second and random-policy episodes.

Throughput: the trainer's `rollout` (a `lax.scan` of vmapped steps, finished episodes reset)
for `--steps` steps with uniformly random actions, the env batch sharded over all devices.
On a CPU, `--cpu-devices N` splits it into N devices (keep each device's batch under the
task's limit: BENCHMARKS.md).
Random policy: `--episode-envs` environments run full episodes (the task's episode length) with
uniformly random actions; reports the mean episode cost and return.

    .venv/bin/python scripts/bench_envs.py --envs SafetyPointGoal1 --num-envs 1024 --steps 20 \\
        --cpu-devices 2
    .venv/bin/python scripts/bench_envs.py --envs SafetyPointButton1 --num-envs 4096 --steps 10 \\
        --cpu-devices 2 --env-option solver=cg --env-option jacobian=sparse
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

import envs
from shapo_jax.rollout import init_tracker, reset_batch, rollout, vmap_in_pieces
from shapo_jax.training.cli import add_env_option_argument, merge_env_options
from shapo_jax.training.devices import (
    ENV_AXIS,
    check_divisible,
    env_pieces,
    lapack_batch_limit,
    make_mesh,
    use_cpu_devices,
)


def pieces_for(env, num_envs: int) -> int:
    """The sequential pieces each device steps its envs in, as the trainer does (on a CPU,
    under XLA:CPU's inline LAPACK limit: docs/environments.md §13)."""
    mesh = make_mesh()
    limit = lapack_batch_limit(env, mesh.devices.flat[0].platform)
    return env_pieces(num_envs, mesh.devices.size, 1, limit)


def env_sharding(num_envs: int) -> NamedSharding:
    """The env axis split over all devices (num_envs must divide evenly)."""
    mesh = make_mesh()
    check_divisible(num_envs, mesh)
    return NamedSharding(mesh, PartitionSpec(ENV_AXIS))


def throughput(env, num_envs: int, steps: int, seed: int = 0) -> tuple[float, float]:
    """(env steps per second, compile seconds) of the trainer's `rollout` with random actions.

    The env batch is sharded over all devices (`--cpu-devices N` splits a CPU into N).
    """
    split = env_sharding(num_envs)
    pieces = pieces_for(env, num_envs)

    def random_actions(obs, key):
        action = jax.random.uniform(key, (obs.shape[0], env.action_size), minval=-1, maxval=1)
        return action, jnp.zeros(obs.shape[0])

    def collect(env_state, tracker, key):
        env_state, tracker, traj = rollout(env, random_actions, env_state, tracker, key, steps,
                                           env_pieces=pieces)
        return env_state, tracker, traj.cost.sum()

    key = jax.random.PRNGKey(seed)
    env_state = jax.jit(lambda k: reset_batch(env, k, num_envs, pieces),
                        out_shardings=split)(key)
    tracker = jax.device_put(init_tracker(num_envs), split)
    start = time.time()
    compiled = jax.jit(collect, in_shardings=(split, split, None),
                       out_shardings=(split, split, None)).lower(env_state, tracker, key).compile()
    compile_s = time.time() - start
    env_state, tracker, cost = compiled(env_state, tracker, jax.random.PRNGKey(seed + 1))
    jax.block_until_ready(cost)
    start = time.time()
    jax.block_until_ready(compiled(env_state, tracker, jax.random.PRNGKey(seed + 2)))
    return num_envs * steps / (time.time() - start), compile_s


def random_policy(env, num_envs: int, seed: int = 0) -> dict[str, float]:
    """Full episodes of uniformly random actions: episode cost and return (mean and standard
    error over episodes) and, for navigation tasks, quantities far less noisy than the episode
    cost for comparing a port with the original: the share of steps with cost, goals reached
    per episode, the robot's net displacement after 100/500/1000 steps, its mean planar speed
    and the share of steps spent outside the placement area."""
    length = env.episode_length
    split = env_sharding(num_envs)
    pieces = pieces_for(env, num_envs)
    navigation = hasattr(env, "config") and hasattr(env.config, "extents")

    def robot_xy(state):
        return state.pipeline_state.data.qpos[..., :2] if navigation else jnp.zeros(
            state.obs.shape[:-1] + (2,))

    def run(state, key):
        def body(state, step_key):
            action = jax.random.uniform(step_key, (num_envs, env.action_size), minval=-1,
                                        maxval=1)
            state = vmap_in_pieces(env.step, pieces)(state, action)
            goal = state.info.get("goal_met", jnp.zeros_like(state.reward))
            return state, (state.reward, state.info["cost"], goal, robot_xy(state))

        start_xy = robot_xy(state)
        _, (rewards, costs, goals, xy) = jax.lax.scan(body, state, jax.random.split(key, length))
        return rewards.sum(0), costs, goals.sum(0), start_xy, xy

    key = jax.random.PRNGKey(seed)
    state = jax.jit(lambda k: reset_batch(env, k, num_envs, pieces), out_shardings=split)(key)
    returns, costs, goals, start_xy, xy = jax.jit(run)(state, jax.random.PRNGKey(seed + 1))
    returns, costs, goals = (np.asarray(a, np.float64) for a in (returns, costs, goals))
    episode_costs = costs.sum(0)
    out = {
        "episodes": num_envs,
        "cost": episode_costs.mean(), "cost_sem": episode_costs.std(ddof=1) / num_envs**0.5,
        "return": returns.mean(), "return_sem": returns.std(ddof=1) / num_envs**0.5,
        "cost_step_share": (costs > 0).mean(), "max_step_cost": costs.max(),
        "goals_per_episode": goals.mean(),
    }
    if navigation:
        xy, start_xy = np.asarray(xy, np.float64), np.asarray(start_xy, np.float64)
        for t in (100, 500, 1000):
            if t <= length:
                out[f"displacement_{t}"] = np.linalg.norm(xy[t - 1] - start_xy, axis=-1).mean()
        steps = np.linalg.norm(np.diff(np.concatenate([start_xy[None], xy]), axis=0), axis=-1)
        out["speed"] = steps.mean() / env.dt
        xmin, ymin, xmax, ymax = env.config.extents
        outside = (xy[..., 0] < xmin) | (xy[..., 0] > xmax) | (xy[..., 1] < ymin) | (
            xy[..., 1] > ymax)
        out["outside_share"] = outside.mean()
    return {k: float(v) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", nargs="+", default=["SafetyPointGoal1"])
    parser.add_argument("--num-envs", nargs="+", type=int, default=[1024])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--episode-envs", type=int, default=64,
                        help="environments for the random-policy episodes (0: skip)")
    parser.add_argument("--cpu-devices", type=int, default=None,
                        help="split the CPU into N devices and shard the envs over them")
    add_env_option_argument(parser)
    args = parser.parse_args()
    try:
        overrides = merge_env_options({}, args.env_option)
    except ValueError as error:
        parser.error(str(error))
    if args.cpu_devices is not None:
        use_cpu_devices(args.cpu_devices)
    print(f"devices: {jax.devices()}")
    for name in args.envs:
        env = envs.make(name, **overrides)
        for n in args.num_envs:
            sps, compile_s = throughput(env, n, args.steps)
            print(f"| {name} | {n} | {compile_s:.1f} | {sps:,.0f} |", flush=True)
        if args.episode_envs:
            stats = random_policy(env, args.episode_envs)
            print(f"random policy on {name}: " + json.dumps(stats), flush=True)


if __name__ == "__main__":
    main()
