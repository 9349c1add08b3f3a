"""The trainer's steps per second against its environments' raw rate, side by side.

    .venv/bin/python scripts/bench_trainer.py --env SafetyPointGoal1 --num-envs 1024 \\
        --algos ppo_lag shapo_ppo_lag --cpu-devices 2

Everything runs on the same task, batch and devices (the env batch sharded over the mesh, in
the pieces the trainer steps it in), compiled once and then timed in interleaved rounds
(median of `--rounds`), so that a noisy machine affects every stage alike:

  env        a `lax.scan` of `rollout_length` vmapped `env.step` calls with random actions,
             no resets: the physics alone (what the environments can give);
  rollout    the library's `rollout` with random actions: auto-reset from the pool of fresh
             states, episode bookkeeping;
  policy     the same `rollout` driven by the actor network, as one member vmapped like the
             trainer's (`jax.vmap` with the member axis name);
  train      `TrainingProgram`'s compiled call of `--updates` whole updates (rollout,
             advantages, multiplier, policy and critic update), as shapo-train runs it;
  policy, <algo> state   the `policy` stage from the first algorithm's training state as it
             stands after each round's train call (the learning actor, the envs where
             training left them): the physics' cost depends on the actions;
  env, <algo> actions    the `env` stage (vmapped `env.step` alone, no actor, no resets) from
             that state, replaying the actions its policy takes there (drawn before the
             clock starts): the raw env rate under the learning policy's actions.

The differences between consecutive stages are where the trainer's time goes: resets and
bookkeeping, the actor, the learning.
"""

from __future__ import annotations

import argparse
import statistics
import time

from shapo_jax.training.devices import use_cpu_devices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="SafetyPointGoal1")
    parser.add_argument("--algos", nargs="+", default=["ppo_lag", "shapo_ppo_lag"])
    parser.add_argument("--num-envs", type=int, default=1024)
    parser.add_argument("--rollout-length", type=int, default=32)
    parser.add_argument("--updates", type=int, default=2, help="updates per timed train call")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--cpu-devices", type=int, help="split the CPU into N XLA devices")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                        help="TrainConfig override, repeatable")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.cpu_devices:
        use_cpu_devices(args.cpu_devices)

    import jax
    import jax.numpy as jnp

    from shapo_jax.io import atomic_write_json
    from shapo_jax.rollout import rollout, vmap_in_pieces
    from shapo_jax.training import TrainConfig
    from shapo_jax.training.cli import parse_override_value
    from shapo_jax.training.devices import ENV_AXIS, make_mesh
    from shapo_jax.training.program import TrainingProgram
    from shapo_jax.training.runner import broadcast_hyperparameters

    overrides = {}
    for item in args.set:
        field, _, text = item.partition("=")
        overrides[field] = parse_override_value(text)
    mesh = make_mesh()
    devices = f"{mesh.devices.size} x {mesh.devices.flat[0].platform}"
    steps = args.num_envs * args.rollout_length
    stages: dict[str, object] = {}  # name -> (compiled fn, args, env steps per call)

    programs, holders = {}, {}
    for algo in args.algos:
        config = TrainConfig(env=args.env, algo=algo, num_envs=args.num_envs,
                             rollout_length=args.rollout_length, **overrides)
        program = TrainingProgram(config, mesh)
        hp = broadcast_hyperparameters(config, 1)
        state = program.init([0], hp)
        tic = time.perf_counter()
        call = program.compiled_chunk(state, hp, args.updates)
        programs[algo] = (program, time.perf_counter() - tic)
        # The compiled call donates its state: each call continues from the last one's.
        holder = {"state": state}

        def train(h, c=call, holder=holder):
            holder["state"], metrics = c(holder["state"], h)
            return metrics

        stages[f"train {algo}"] = (train, (hp,), steps * args.updates)
        holders[algo] = holder

    program = next(iter(programs.values()))[0]
    trainer, env = program.trainer, program.env
    pieces = trainer.env_pieces
    state = program.init([0], broadcast_hyperparameters(program.config, 1))
    shardings = program.shardings(1, broadcast_hyperparameters(program.config, 1))
    env_state, tracker = state.env_state, state.tracker

    def random_actions(obs, key):
        return (jax.random.uniform(key, obs.shape[:-1] + (env.action_size,), minval=-1,
                                   maxval=1), jnp.zeros(obs.shape[:-1]))

    def physics(env_state, key):
        step = vmap_in_pieces(env.step, pieces)

        def body(s, k):
            s = step(s, random_actions(s.obs, k)[0])
            return s, s.reward.sum()

        return jax.lax.scan(body, env_state, jax.random.split(key, args.rollout_length))

    def library_rollout(env_state, tracker, key):
        out = rollout(env, random_actions, env_state, tracker, key, args.rollout_length,
                      env_pieces=pieces)
        return out[0], out[2].reward.sum()

    def member_trajectory(state, key):
        """The one member's rollout as the trainer runs it: unbatched (program.py)."""
        s = jax.tree_util.tree_map(lambda x: x[0], state)
        return rollout(env, trainer.policy(s), s.env_state, s.tracker, key,
                       args.rollout_length, env_pieces=pieces)

    def member_rollout(state, key):
        out = member_trajectory(state, key)
        return out[0], out[2].reward.sum()

    key = jax.random.PRNGKey(1)
    first_env = jax.tree_util.tree_map(lambda x: x[0], env_state)
    first_tracker = jax.tree_util.tree_map(lambda x: x[0], tracker)
    split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(ENV_AXIS))
    env_split = jax.tree_util.tree_map(lambda _: split, first_env)
    tracker_split = jax.tree_util.tree_map(lambda _: split, first_tracker)
    first_env = jax.device_put(first_env, env_split)
    first_tracker = jax.device_put(first_tracker, tracker_split)
    compile_s = {}
    for name, fn, fn_args, shard in (
            ("env", physics, (first_env, key), (env_split, None)),
            ("rollout", library_rollout, (first_env, first_tracker, key),
             (env_split, tracker_split, None)),
            ("policy", member_rollout, (state, key), (shardings, None))):
        tic = time.perf_counter()
        compiled = jax.jit(fn, in_shardings=shard).lower(*fn_args).compile()
        compile_s[name] = time.perf_counter() - tic
        stages[name] = (compiled, fn_args, steps)
    # The policy rollout again, from the first algorithm's training state as it stands: the
    # actor as it learns and the envs where training left them.
    first = args.algos[0]
    stages[f"policy, {first} state"] = (
        lambda k, c=stages["policy"][0], h=holders[first]: c(h["state"], k), (key,), steps)

    # The learning policy's actions from the training state, replayed by the bare physics.
    def policy_actions(state, key):
        return member_trajectory(state, key)[2].action

    def replay(env_state, actions):
        step = vmap_in_pieces(env.step, pieces)

        def body(s, action):
            s = step(s, action)
            return s, s.reward.sum()

        return jax.lax.scan(body, env_state, actions)

    draw = jax.jit(policy_actions, in_shardings=(shardings, None))
    replayed = jax.jit(replay, in_shardings=(env_split, None))
    first_member = jax.jit(lambda s: jax.tree_util.tree_map(lambda x: x[0], s.env_state),
                           out_shardings=env_split)

    def replay_inputs(h=holders[first]):
        """(env state, actions) of member 0 as training left it (computed off the clock)."""
        return (first_member(h["state"]), jax.block_until_ready(draw(h["state"], key)))

    stages[f"env, {first} actions"] = (replayed, replay_inputs, steps)
    order = (["env", "rollout", "policy"] + [f"train {a}" for a in args.algos]
             + [f"policy, {first} state", f"env, {first} actions"])

    def inputs(fn_args):
        return fn_args() if callable(fn_args) else fn_args

    for name in order:  # warm-up
        fn, fn_args, _ = stages[name]
        jax.block_until_ready(fn(*inputs(fn_args)))
    seconds: dict[str, list[float]] = {name: [] for name in order}
    for _ in range(args.rounds):
        for name in order:
            fn, fn_args, _ = stages[name]
            fn_args = jax.block_until_ready(inputs(fn_args))
            tic = time.perf_counter()
            jax.block_until_ready(fn(*fn_args))
            seconds[name].append(time.perf_counter() - tic)
    rates = {name: stages[name][2] / statistics.median(seconds[name]) for name in order}

    print(f"{args.env}, {args.num_envs} envs x {args.rollout_length} steps on {devices}, "
          f"{pieces} piece(s) per device step; jax {jax.__version__}; median of "
          f"{args.rounds} interleaved rounds")
    print("| stage | env steps/s | of env | ms per 1,000 env steps |")
    print("|---|---:|---:|---:|")
    for name in order:
        print(f"| {name} | {rates[name]:,.0f} | {rates[name] / rates['env']:.2f} | "
              f"{1e3 * 1000 / rates[name]:.2f} |")
    reference = rates[f"env, {first} actions"]
    print("against the physics under the learning policy's actions (env, "
          f"{first} actions): " + ", ".join(
              f"train {a} {rates[f'train {a}'] / reference:.2f}" for a in args.algos))
    for algo, (_, seconds_compile) in programs.items():
        print(f"compile {algo}: {seconds_compile:.1f} s", end="; ")
    print(", ".join(f"compile {k}: {v:.1f} s" for k, v in compile_s.items()))
    if args.json:
        atomic_write_json(args.json, {"env": args.env, "num_envs": args.num_envs,
                                      "devices": devices, "pieces": pieces, "rates": rates,
                                      "seconds": seconds})


if __name__ == "__main__":
    main()
