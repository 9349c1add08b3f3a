"""`shapo-train`: train (SHAPO-)PPO/TRPO-Lagrangian on a safe environment.

    shapo-train --env SafetyPointGoal1 --algo shapo_ppo_lag --seeds 3 --out runs/pg1
    shapo-train --resume runs/pg1            # continue from the last checkpoint
    shapo-train --set update_epochs=8 --set hidden_sizes=[128,128] ...
    shapo-train --env SafetyPointButton1 --env-option solver=cg --env-option jacobian=sparse

Writes DIR/config.json, DIR/metrics.jsonl (one JSON object per log point and seed),
DIR/tensorboard/seed_<s>/ (TensorBoard event files: tensorboard --logdir DIR/tensorboard),
DIR/checkpoints/ (orbax, full state) and DIR/training.png; --wandb logs to Weights & Biases.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

from shapo_jax.training.config import ALGORITHMS, TrainConfig
from shapo_jax.training.devices import HOST_DEVICE_FLAG, auto_cpu_devices, use_cpu_devices
from shapo_jax.training.hyperparameters import TRACED_SETTINGS
from shapo_jax.training.presets import PRESETS, preset_overrides
from shapo_jax.training.watchdog import DEFAULT_STALL_TIMEOUT

CLI_FIELDS = {  # flag -> config field; every traced setting has a flag of its name too
    "env": "env", "algo": "algo", "total_steps": "total_steps", "num_envs": "num_envs",
    "seeds": "num_seeds", "seed": "seed", **{s.name: s.name for s in TRACED_SETTINGS},
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shapo-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--out", default="runs/latest", help="output directory")
    parser.add_argument("--resume", metavar="DIR", help="continue the run in DIR")
    add_distributed_arguments(parser, "shard the envs over the devices of all processes")
    add_cpu_devices_argument(parser)
    add_logging_arguments(parser, "seed", "DIR")
    parser.add_argument("--no-plot", action="store_true")
    return parser


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that make a TrainConfig (`config_from_args`): shapo-train's and the
    benchmarks' (scripts/bench_*.py) --env, --algo, the budget, the traced settings, --preset,
    --set FIELD=VALUE and --env-option."""
    parser.add_argument("--env", help="environment name (see envs.list_envs())")
    parser.add_argument("--algo", choices=ALGORITHMS)
    parser.add_argument("--total-steps", type=int, help="environment steps per seed")
    parser.add_argument("--num-envs", type=int, help="parallel environments per seed")
    parser.add_argument("--seeds", type=int, help="number of seeds, vmapped in one program")
    parser.add_argument("--seed", type=int, help="base seed")
    for setting in TRACED_SETTINGS:
        bound = "> 0" if setting.positive else ">= 0"
        parser.add_argument(setting.flag, type=float, metavar="V",
                            help=f"{setting.help} ({bound}; default {setting.default:g})")
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="start from a named bundle of settings (flags and --set override "
                             "it): omnisafe = OmniSafe 0.5's PPOLag/TRPOLag (training.presets)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override any TrainConfig field (JSON value), repeatable")
    add_env_option_argument(parser)


def add_logging_arguments(parser: argparse.ArgumentParser, unit: str, directory: str) -> None:
    """--no-tensorboard and --wandb/--wandb-project/--wandb-entity, shared by shapo-train
    (`unit` "seed") and shapo-sweep ("member"); see `logging_options`."""
    group = parser.add_argument_group(
        "logging", f"TensorBoard and Weights & Biases: every metric of metrics.jsonl, one "
                   f"run per {unit}, against env steps")
    group.add_argument("--no-tensorboard", action="store_true",
                       help=f"write no TensorBoard event files (default: one run per {unit} "
                            f"under {directory}/tensorboard/)")
    group.add_argument("--wandb", action="store_true",
                       help=f"also log to Weights & Biases, one W&B run per {unit} grouped by "
                            f"the name of {directory} (needs: pip install wandb)")
    group.add_argument("--wandb-project", metavar="NAME",
                       help="the W&B project (with --wandb; default shapo-jax)")
    group.add_argument("--wandb-entity", metavar="NAME",
                       help="the W&B user or team (with --wandb; default: yours)")


def logging_options(args: argparse.Namespace) -> tuple[bool, Any]:
    """(TensorBoard on, WandbSettings or None) of the flags; raises ValueError naming a bad
    value, or when --wandb is given but the wandb package is missing (`pip install wandb`),
    so the CLIs refuse it before anything compiles."""
    from shapo_jax.metrics.wandb_runs import DEFAULT_PROJECT, WandbSettings, import_wandb

    if not args.wandb:
        given = [flag for flag, value in (("--wandb-project", args.wandb_project),
                                          ("--wandb-entity", args.wandb_entity))
                 if value is not None]
        if given:
            raise ValueError(f"{' and '.join(given)} given without --wandb: add --wandb to log "
                             "to Weights & Biases, or drop them")
        return not args.no_tensorboard, None
    settings = WandbSettings(project=DEFAULT_PROJECT if args.wandb_project is None
                             else args.wandb_project, entity=args.wandb_entity)
    import_wandb()
    return not args.no_tensorboard, settings


def add_cpu_devices_argument(parser: argparse.ArgumentParser) -> None:
    """--cpu-devices N|auto and --stall-timeout, shared by shapo-train and shapo-sweep."""
    parser.add_argument("--cpu-devices", default="auto", metavar="N|auto",
                        help="split the CPU into N XLA devices and shard the envs over them; "
                             "auto (default): one per usable core that divides the env batch "
                             "(no effect on the GPUs and TPUs, which JAX uses first)")
    parser.add_argument("--stall-timeout", type=float, default=DEFAULT_STALL_TIMEOUT,
                        metavar="SECONDS",
                        help="stop with exit status 3 and a message when no chunk of updates "
                             f"finishes for this long (default {DEFAULT_STALL_TIMEOUT:g}; "
                             "0: never)")


def apply_cpu_devices(value: str, num_envs: list[int]) -> None:
    """Act on --cpu-devices before JAX starts: N splits the CPU (`use_cpu_devices`, through
    XLA_FLAGS, so child processes inherit it); auto splits this process's CPU one device per
    core (`auto_cpu_devices` of the runs' env batches, `jax_num_cpu_devices`) unless XLA_FLAGS
    or JAX_NUM_CPU_DEVICES already choose a split or JAX is already running (a caller
    in-process). With several processes on one machine, give N."""
    if value != "auto":
        try:
            count = int(value)
        except ValueError:
            raise ValueError(f"--cpu-devices expects a positive integer or auto, got "
                             f"{value!r}") from None
        use_cpu_devices(count)
        return
    import jax
    from jax._src import xla_bridge

    chosen = (HOST_DEVICE_FLAG in os.environ.get("XLA_FLAGS", "")
              or os.environ.get("JAX_NUM_CPU_DEVICES"))
    if chosen or xla_bridge.backends_are_initialized():
        return
    jax.config.update("jax_num_cpu_devices", auto_cpu_devices(num_envs))


def stall_timeout(args: argparse.Namespace) -> float | None:
    """--stall-timeout in seconds, None for 0 (never); refuses a negative value by name."""
    if not args.stall_timeout >= 0:
        raise ValueError(f"--stall-timeout must be >= 0 seconds, got {args.stall_timeout}")
    return args.stall_timeout or None


def add_distributed_arguments(parser: argparse.ArgumentParser, effect: str) -> None:
    """--distributed and --coordinator/--num-processes/--process-id, shared by shapo-train and
    shapo-sweep (see `distributed_options`); `effect` says what several processes do."""
    group = parser.add_argument_group(
        "several processes (jax.distributed)",
        "start the same command once per process; give all three of --coordinator, "
        "--num-processes and --process-id, or none of them to let JAX detect the cluster "
        "(Slurm, Open MPI, TPU pods)")
    group.add_argument("--distributed", action="store_true",
                       help=f"call jax.distributed.initialize() first and {effect} (implied "
                            "by --coordinator)")
    group.add_argument("--coordinator", metavar="HOST:PORT",
                       help="address of process 0, where the coordinator service listens")
    group.add_argument("--num-processes", type=int, metavar="N", help="number of processes")
    group.add_argument("--process-id", type=int, metavar="I",
                       help="this process's index, 0 .. N-1 (0 runs the coordinator)")


def distributed_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """The keyword arguments of `jax.distributed.initialize` the flags ask for ({} to detect
    the cluster), or None without --distributed; raises ValueError naming a bad value, so
    the CLIs refuse it before JAX starts."""
    given = {"--coordinator": args.coordinator, "--num-processes": args.num_processes,
             "--process-id": args.process_id}
    missing = [flag for flag, value in given.items() if value is None]
    if len(missing) == len(given):
        return {} if args.distributed else None
    if missing:
        raise ValueError(f"give all of --coordinator, --num-processes and --process-id or "
                         f"none of them; missing {', '.join(missing)}")
    host, sep, port = args.coordinator.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--coordinator expects HOST:PORT with a port in 1..65535, got "
                         f"{args.coordinator!r}")
    if args.num_processes < 1:
        raise ValueError(f"--num-processes must be a positive integer, got {args.num_processes}")
    if not 0 <= args.process_id < args.num_processes:
        raise ValueError(f"--process-id must be in 0..{args.num_processes - 1} "
                         f"(--num-processes {args.num_processes}), got {args.process_id}")
    return {"coordinator_address": args.coordinator, "num_processes": args.num_processes,
            "process_id": args.process_id}


def start_distributed(options: dict[str, Any]) -> None:
    """`jax.distributed.initialize(**options)`, with gloo for the CPU's collectives (on CPU,
    processes reduce over TCP with gloo; GPU and TPU backends ignore the setting) unless
    JAX_CPU_COLLECTIVES_IMPLEMENTATION chooses another. Call before any JAX computation.
    Raises ValueError when JAX finds no cluster to join (plain --distributed elsewhere)."""
    import jax

    if not os.environ.get("JAX_CPU_COLLECTIVES_IMPLEMENTATION"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(**options)
    except ValueError as error:
        if options:
            raise
        raise ValueError(f"--distributed: JAX detected no cluster ({error}); give "
                         "--coordinator HOST:PORT --num-processes N --process-id I") from error


def add_env_option_argument(parser: argparse.ArgumentParser) -> None:
    """--env-option KEY=VALUE, shared by shapo-train and shapo-sweep (TrainConfig.env_options)."""
    parser.add_argument("--env-option", action="append", default=[], metavar="KEY=VALUE",
                        help="environment override passed to envs.make (JSON value), e.g. "
                             "solver=cg; repeatable")


def merge_env_options(options: Any, items: list[str]) -> dict[str, Any]:
    """`options` (a dict or pairs, e.g. from config.json) updated by --env-option items."""
    merged = dict(options or {})
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--env-option expects KEY=VALUE, got {item!r}")
        merged[key] = parse_override_value(text)
    return merged


def parse_override_value(text: str) -> Any:
    """A --set value: JSON when it parses (numbers, lists, booleans), else the plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def config_from_args(args: argparse.Namespace, base: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults (or `base`), then the preset, the named flags, then --set FIELD=VALUE."""
    data = dict(base or {})
    if getattr(args, "preset", None):
        algo = args.algo or data.get("algo") or TrainConfig().algo
        data.update(preset_overrides(args.preset, algo))
    for flag, field in CLI_FIELDS.items():
        value = getattr(args, flag)
        if value is not None:
            data[field] = value
    valid = {f.name for f in dataclasses.fields(TrainConfig)}
    for item in args.set:
        if "=" not in item:
            raise ValueError(f"--set expects FIELD=VALUE, got {item!r}")
        field, text = item.split("=", 1)
        if field not in valid:
            raise ValueError(f"--set: unknown config field {field!r}; valid: {sorted(valid)}")
        data[field] = parse_override_value(text)
    if args.env_option:
        data["env_options"] = merge_env_options(data.get("env_options"), args.env_option)
    return TrainConfig.from_dict(data)


def _fail(message: str) -> None:
    print(f"shapo-train: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.resume or args.out)
    try:
        base = None
        if args.resume:
            config_path = out / "config.json"
            if not config_path.exists():
                raise ValueError(f"--resume {out}: no config.json there (not a run directory)")
            base = json.loads(config_path.read_text())
        config = config_from_args(args, base)
        distributed = distributed_options(args)
        timeout = stall_timeout(args)
        tensorboard, wandb = logging_options(args)
    except (ValueError, TypeError, json.JSONDecodeError) as error:
        _fail(str(error))

    try:
        apply_cpu_devices(args.cpu_devices, [config.num_envs])
    except (ValueError, RuntimeError) as error:
        _fail(str(error))
    if distributed is not None:
        try:
            start_distributed(distributed)
        except ValueError as error:
            _fail(str(error))
    from shapo_jax.training.runner import Runner

    try:
        env = config.make_env()
        runner = Runner(config, env, out, resume=bool(args.resume), stall_timeout=timeout,
                        tensorboard=tensorboard, wandb=wandb)
    except (ValueError, FileNotFoundError) as error:
        _fail(str(error))
    summary = runner.train(plot=not args.no_plot)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
