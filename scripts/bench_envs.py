"""Benchmark of the navigation tasks: vmapped steps per second and random-policy episodes.

Throughput: one jitted `lax.scan` of `--steps` vmapped steps with uniformly random actions and
auto-reset as a trainer does it (`reset` is called every step and selected where done).
Random policy: `--episode-envs` environments run full episodes (the task's episode length) with
uniformly random actions; reports the mean episode cost and return.

    .venv/bin/python scripts/bench_envs.py --envs SafetyPointGoal1 --num-envs 1024 --steps 20
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

import envs


def throughput(env, num_envs: int, steps: int, seed: int = 0) -> tuple[float, float]:
    def run(key):
        key, reset_key = jax.random.split(key)
        state = jax.vmap(env.reset)(jax.random.split(reset_key, num_envs))

        def body(carry, _):
            state, key = carry
            key, act_key, reset_key = jax.random.split(key, 3)
            action = jax.random.uniform(act_key, (num_envs, env.action_size), minval=-1,
                                        maxval=1)
            state = jax.vmap(env.step)(state, action)
            fresh = jax.vmap(env.reset)(jax.random.split(reset_key, num_envs))
            done = state.done

            def pick(a, b):
                mask = done.reshape(done.shape + (1,) * (a.ndim - 1)) > 0
                return jnp.where(mask, b, a)

            state = jax.tree.map(pick, state, fresh)
            return (state, key), state.info["cost"].sum()

        (state, _), costs = jax.lax.scan(body, (state, key), None, length=steps)
        return costs.sum()

    start = time.time()
    compiled = jax.jit(run).lower(jax.random.PRNGKey(seed)).compile()
    compile_s = time.time() - start
    jax.block_until_ready(compiled(jax.random.PRNGKey(seed)))
    start = time.time()
    jax.block_until_ready(compiled(jax.random.PRNGKey(seed + 1)))
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
    args = parser.parse_args()
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
