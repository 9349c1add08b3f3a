"""Several members trained with whole members per device against the env split, side by side.

    .venv/bin/python scripts/bench_member_sharding.py --env SafetyPointGoal1 --seeds 4 \\
        --preset omnisafe --num-envs 1024 --set rollout_length=20 --set target_kl=null \\
        --cpu-devices 2

`TrainingProgram` splits the members' state over the devices on the member axis when the
members divide evenly (`shards_members`): each device steps all envs of its own members and
runs their update. With `member_sharding=False` every device steps a slice of every member's
envs, and the update, which needs each member's whole batch, runs on every device alike. Both
programs start from the same state, are compiled once, then timed in interleaved rounds
(median of `--rounds` calls of `--updates` updates each).
"""

from __future__ import annotations

import argparse
import statistics
import time

from shapo_jax.training.devices import use_cpu_devices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="SafetyPointGoal1")
    parser.add_argument("--algo", default="ppo_lag")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--num-envs", type=int, default=1024)
    parser.add_argument("--preset", help="a named bundle of settings (training.presets)")
    parser.add_argument("--updates", type=int, default=2, help="updates per timed call")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--cpu-devices", type=int, help="split the CPU into N XLA devices")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                        help="TrainConfig override, repeatable")
    args = parser.parse_args()
    if args.cpu_devices:
        use_cpu_devices(args.cpu_devices)

    import jax

    from shapo_jax.training import TrainConfig
    from shapo_jax.training.cli import parse_override_value
    from shapo_jax.training.devices import make_mesh
    from shapo_jax.training.presets import preset_overrides
    from shapo_jax.training.program import TrainingProgram
    from shapo_jax.training.runner import broadcast_hyperparameters

    fields = preset_overrides(args.preset, args.algo) if args.preset else {}
    for item in args.set:
        key, _, value = item.partition("=")
        fields[key] = parse_override_value(value)
    fields.update(env=args.env, algo=args.algo, num_envs=args.num_envs)
    config = TrainConfig.from_dict(fields)
    env = config.make_env()
    mesh = make_mesh()
    seeds = list(range(args.seeds))
    hp = broadcast_hyperparameters(config, len(seeds))
    steps = args.updates * config.env_steps_per_update * len(seeds)
    programs, states, calls = {}, {}, {}
    for name, member_sharding in (("whole members per device", True), ("env split", False)):
        program = TrainingProgram(config, mesh, env=env, member_sharding=member_sharding)
        state = program.init(seeds, hp)
        calls[name] = program.compiled_chunk(state, hp, args.updates)
        states[name], _ = calls[name](state, hp)  # warm-up call; the state is donated
        jax.block_until_ready(states[name])
        programs[name] = program
        note = program.batching_note(len(seeds))
        print(f"{name}: shards_members={program.shards_members(len(seeds))}"
              + (f"; {note}" if note else ""))
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(args.rounds):
        for name, call in calls.items():
            tic = time.perf_counter()
            states[name], metrics = call(states[name], hp)
            jax.block_until_ready((states[name], metrics))
            times[name].append(time.perf_counter() - tic)
    print(f"{args.env} {args.algo}: {len(seeds)} members x {args.num_envs} envs, "
          f"{len(mesh.devices.flat)} device(s), {args.updates} update(s) per call")
    rates = {name: steps / statistics.median(t) for name, t in times.items()}
    for name, rate in rates.items():
        print(f"  {name:26s} {rate:9,.0f} env steps/s (all members)")
    whole, split = rates["whole members per device"], rates["env split"]
    print(f"  ratio whole members / env split: {whole / split:.2f}")


if __name__ == "__main__":
    main()
