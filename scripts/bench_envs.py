"""Benchmark of the navigation tasks: vmapped steps per second and random-policy episodes.

Throughput: the trainer's `rollout` (a `lax.scan` of vmapped steps, finished episodes reset)
for `--steps` steps with uniformly random actions, the env batch sharded over all devices.
On a CPU, `--cpu-devices N` splits it into N devices (keep <= 512 navigation envs each).
Random policy: `--episode-envs` environments run full episodes (the task's episode length) with
uniformly random actions; reports the mean episode cost and return.

    .venv/bin/python scripts/bench_envs.py --envs SafetyPointGoal1 --num-envs 1024 --steps 20 \\
        --cpu-devices 2
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec

import envs
from shapo_jax.rollout import init_tracker, reset_batch, rollout
from shapo_jax.training.devices import ENV_AXIS, check_divisible, make_mesh, use_cpu_devices


def throughput(env, num_envs: int, steps: int, seed: int = 0) -> tuple[float, float]:
    """(env steps per second, compile seconds) of the trainer's `rollout` with random actions.

    The env batch is sharded over all devices (`--cpu-devices N` splits a CPU into N).
    """
    mesh = make_mesh()
    check_divisible(num_envs, mesh)
    split = NamedSharding(mesh, PartitionSpec(ENV_AXIS))

    def random_actions(obs, key):
        action = jax.random.uniform(key, (obs.shape[0], env.action_size), minval=-1, maxval=1)
        return action, jnp.zeros(obs.shape[0])

    def collect(env_state, tracker, key):
        env_state, tracker, traj = rollout(env, random_actions, env_state, tracker, key, steps)
        return env_state, tracker, traj.cost.sum()

    key = jax.random.PRNGKey(seed)
    env_state = jax.jit(lambda k: reset_batch(env, k, num_envs), out_shardings=split)(key)
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


def random_policy(env, num_envs: int, seed: int = 0) -> tuple[float, float]:
    length = env.episode_length

    def run(key):
        key, reset_key = jax.random.split(key)
        state = jax.vmap(env.reset)(jax.random.split(reset_key, num_envs))

        def body(carry, _):
            state, key = carry
            key, act_key = jax.random.split(key)
            action = jax.random.uniform(act_key, (num_envs, env.action_size), minval=-1,
                                        maxval=1)
            state = jax.vmap(env.step)(state, action)
            return (state, key), (state.reward, state.info["cost"])

        _, (rewards, costs) = jax.lax.scan(body, (state, key), None, length=length)
        return rewards.sum(0), costs.sum(0)

    returns, costs = jax.jit(run)(jax.random.PRNGKey(seed))
    return float(costs.mean()), float(returns.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", nargs="+", default=["SafetyPointGoal1"])
    parser.add_argument("--num-envs", nargs="+", type=int, default=[1024])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--episode-envs", type=int, default=64,
                        help="environments for the random-policy episodes (0: skip)")
    parser.add_argument("--cpu-devices", type=int, default=None,
                        help="split the CPU into N devices and shard the envs over them")
    args = parser.parse_args()
    if args.cpu_devices is not None:
        use_cpu_devices(args.cpu_devices)
    print(f"devices: {jax.devices()}")
    for name in args.envs:
        env = envs.make(name)
        for n in args.num_envs:
            sps, compile_s = throughput(env, n, args.steps)
            print(f"| {name} | {n} | {compile_s:.1f} | {sps:,.0f} |", flush=True)
        if args.episode_envs:
            cost, ret = random_policy(env, args.episode_envs)
            print(f"| {name} | random policy, {args.episode_envs} episodes | cost {cost:.1f} | "
                  f"return {ret:.2f} |", flush=True)


if __name__ == "__main__":
    main()
