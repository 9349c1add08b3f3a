"""`shapo-sweep` and `shapo-plot`: the sweep and its figures from the command line.

    shapo-sweep --algos ppo_lag shapo_ppo_lag --envs TinyHazardNav \\
        --delta-down 0.002 0.005 --seeds 5 --total-steps 200000 --out runs/sweep
    shapo-sweep --config sweep.json --out runs/sweep     # flags override the file
    shapo-sweep --out runs/sweep ...                     # same command again: resumes
    shapo-plot runs/sweep --out figures/sweep
    tensorboard --logdir runs/sweep/tensorboard         # one TensorBoard run per member

A config file is JSON with the keys of `SweepSpec.from_dict`: algos, envs, grid (field ->
values), seeds (count or list), seed (base), set (TrainConfig overrides), env_set (per-task
overrides), max_group_size.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from shapo_jax.training.cli import (
    add_cpu_devices_argument,
    add_distributed_arguments,
    add_env_option_argument,
    add_logging_arguments,
    apply_cpu_devices,
    distributed_options,
    logging_options,
    merge_env_options,
    parse_override_value,
    stall_timeout,
    start_distributed,
)
from shapo_jax.training.config import ALGORITHMS
from shapo_jax.training.hyperparameters import TRACED_SETTINGS
from shapo_jax.training.presets import PRESETS

GRID_FLAGS = tuple(s.name for s in TRACED_SETTINGS)  # one grid axis per traced setting


def build_sweep_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shapo-sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="JSON sweep file (flags given here override it)")
    parser.add_argument("--algos", nargs="+", choices=ALGORITHMS)
    parser.add_argument("--envs", nargs="+", help="environment names (see envs.list_envs())")
    for setting in TRACED_SETTINGS:
        parser.add_argument(setting.flag, nargs="+", type=float, metavar="V",
                            help=f"values of {setting.name}: {setting.help} (grid axis)")
    parser.add_argument("--seeds", type=int, help="number of seeds: seed .. seed + N - 1")
    parser.add_argument("--seed-list", nargs="+", type=int, help="explicit seeds")
    parser.add_argument("--seed", type=int, help="base seed (with --seeds; default 0)")
    parser.add_argument("--total-steps", type=int, help="environment steps per run")
    parser.add_argument("--num-envs", type=int, help="parallel environments per run")
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="a named bundle of settings per algorithm family, under --set "
                             "(omnisafe: OmniSafe 0.5's PPOLag/TRPOLag; training.presets)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                        help="override a TrainConfig field for every run, repeatable")
    add_env_option_argument(parser)
    parser.add_argument("--max-group-size", type=int,
                        help="at most this many runs per compiled program (memory)")
    parser.add_argument("--out", default="runs/sweep", help="sweep directory")
    add_distributed_arguments(parser, "let each process run its share of the groups")
    add_cpu_devices_argument(parser)
    add_logging_arguments(parser, "member", "OUT")
    parser.add_argument("--dry-run", action="store_true", help="list the groups and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def spec_from_args(args: argparse.Namespace):
    """The SweepSpec of the config file (if any) overridden by the flags."""
    from shapo_jax.experiments.grid import SweepSpec

    data: dict[str, Any] = json.loads(Path(args.config).read_text()) if args.config else {}
    data.setdefault("set", {})
    data.setdefault("grid", {})
    data["set"] = dict(data["set"])
    data["grid"] = dict(data["grid"])
    if args.algos:
        data["algos"] = args.algos
    if args.envs:
        data["envs"] = args.envs
    for field in GRID_FLAGS:
        values = getattr(args, field)
        if values is not None:
            data["grid"][field] = values
    if args.seed is not None:
        data["seed"] = args.seed
    if args.seeds is not None:
        data["seeds"] = args.seeds
    if args.seed_list is not None:
        data["seeds"] = args.seed_list
    if args.total_steps is not None:
        data["set"]["total_steps"] = args.total_steps
    if args.num_envs is not None:
        data["set"]["num_envs"] = args.num_envs
    for item in args.set:
        if "=" not in item:
            raise ValueError(f"--set expects FIELD=JSON, got {item!r}")
        field, text = item.split("=", 1)
        data["set"][field] = parse_override_value(text)
    if args.env_option:
        data["set"]["env_options"] = merge_env_options(data["set"].get("env_options"),
                                                       args.env_option)
    if args.max_group_size is not None:
        data["max_group_size"] = args.max_group_size
    if args.preset is not None:
        data["preset"] = args.preset
    if not data.get("algos") or not data.get("envs"):
        raise ValueError("give --algos and --envs (or a --config file naming them)")
    return SweepSpec.from_dict(data)


def _fail(prog: str, message: str) -> None:
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def sweep_main(argv: list[str] | None = None) -> int:
    """Entry point of `shapo-sweep`."""
    args = build_sweep_parser().parse_args(argv)
    from shapo_jax.experiments.grid import expand_grid, group_members

    try:
        spec = spec_from_args(args)
        distributed = distributed_options(args)
        timeout = stall_timeout(args)
        tensorboard, wandb = logging_options(args)
        groups = group_members(expand_grid(spec), spec.max_group_size)
        import envs

        for group in groups:
            envs.check_overrides(group.config.env, dict(group.config.env_options))
    except (ValueError, TypeError, OSError, json.JSONDecodeError) as error:
        _fail("shapo-sweep", str(error))
    if args.dry_run:
        for group in groups:
            print(f"{group.group_id}: {group.label}, {group.config.num_updates} updates of "
                  f"{group.config.env_steps_per_update} env steps")
        return 0
    try:
        apply_cpu_devices(args.cpu_devices, [group.config.num_envs for group in groups])
    except (ValueError, RuntimeError) as error:
        _fail("shapo-sweep", str(error))
    if distributed is not None:
        try:
            start_distributed(distributed)
        except ValueError as error:
            _fail("shapo-sweep", str(error))
    from shapo_jax.experiments.sweep import run_sweep

    try:
        result = run_sweep(spec, args.out, progress=None if args.quiet else sys.stderr,
                           stall_timeout=timeout, tensorboard=tensorboard, wandb=wandb)
    except ValueError as error:
        _fail("shapo-sweep", str(error))
    print(json.dumps({"out": str(result.out), "table": str(result.table),
                      "groups": result.groups, "runs_trained": result.runs_trained,
                      "runs_skipped": result.runs_skipped,
                      "diverged_runs": result.diverged_runs}, indent=2))
    return 0


def build_plot_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shapo-plot",
        description="Learning curves and Pareto plots (PNG and PDF) of sweep tables.")
    parser.add_argument("sources", nargs="+", help="sweep directories, table CSV files, "
                        "shapo-train run directories or study directories of them")
    parser.add_argument("--out", default=None, help="figure directory (default SOURCE/figures)")
    parser.add_argument("--final-fraction", type=float, default=0.1,
                        help="final values average the last FRACTION of each run's log points")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--formats", nargs="+", default=["png", "pdf"])
    parser.add_argument("--pool-programs", action="store_true",
                        help="pool the seeds of a setting that several sources ran with "
                        "different static configurations (refused by default)")
    return parser


def plot_main(argv: list[str] | None = None) -> int:
    """Entry point of `shapo-plot`."""
    args = build_plot_parser().parse_args(argv)
    from shapo_jax.experiments.plots import plot_sweep

    source = Path(args.sources[0])
    out = Path(args.out) if args.out else (source if source.is_dir() else source.parent) / "figures"
    try:
        paths = plot_sweep(*args.sources, out=out, final_fraction=args.final_fraction,
                           confidence=args.confidence, formats=args.formats,
                           pool_programs=args.pool_programs)
    except (ValueError, FileNotFoundError) as error:
        _fail("shapo-plot", str(error))
    for path in paths:
        print(path)
    return 0
