"""Several members trained with whole members per device against the env split, side by side.

    .venv/bin/python scripts/bench_member_sharding.py --env SafetyPointGoal1 --seeds 4 \\
        --preset omnisafe --num-envs 1024 --set rollout_length=20 --set target_kl=null \\
        --cpu-devices 2

`TrainingProgram` splits the members' state over the devices on the member axis when the
members divide evenly (`shards_members`): each device steps all envs of its own members and
runs their update. With `member_sharding=False` every device steps a slice of every member's
envs, and the update, which needs each member's whole batch, runs on every device alike. Both
programs are compiled once, then timed in interleaved rounds from the same initial state
(median of `--rounds` calls of `--updates` updates each; scripts/program_bench.py).
"""

from __future__ import annotations

from program_bench import parse_program_args, time_programs


def main() -> None:
    args, config = parse_program_args(__doc__)
    from shapo_jax.training.devices import make_mesh
    from shapo_jax.training.program import TrainingProgram
    from shapo_jax.training.runner import broadcast_hyperparameters

    env, mesh = config.make_env(), make_mesh()
    hp = broadcast_hyperparameters(config, config.num_seeds)
    programs = {name: TrainingProgram(config, mesh, env=env, member_sharding=member_sharding)
                for name, member_sharding in (("whole members per device", True),
                                              ("env split", False))}
    for name, program in programs.items():
        note = program.batching_note(config.num_seeds)
        print(f"{name}: shards_members={program.shards_members(config.num_seeds)}"
              + (f"; {note}" if note else ""))
    rates, _ = time_programs(programs, hp, args.updates, args.rounds,
                                  args.checkpoint)
    print(f"{config.env} {config.algo}: {config.num_seeds} members x {config.num_envs} envs, "
          f"{len(mesh.devices.flat)} device(s), {args.updates} update(s) per call")
    for name, rate in rates.items():
        print(f"  {name:26s} {rate:9,.0f} env steps/s (all members)")
    whole, split = rates["whole members per device"], rates["env split"]
    print(f"  ratio whole members / env split: {whole / split:.2f}")


if __name__ == "__main__":
    main()
