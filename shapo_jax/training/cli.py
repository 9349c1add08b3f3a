"""`shapo-train`: train (SHAPO-)PPO/TRPO-Lagrangian on a safe environment.

    shapo-train --env SafetyPointGoal1 --algo shapo_ppo_lag --seeds 3 --out runs/pg1
    shapo-train --resume runs/pg1            # continue from the last checkpoint
    shapo-train --set update_epochs=8 --set hidden_sizes=[128,128] ...
    shapo-train --env SafetyPointButton1 --env-option solver=cg --env-option jacobian=sparse

Writes DIR/config.json, DIR/metrics.jsonl (one JSON object per log point and seed),
DIR/checkpoints/ (orbax, full state) and DIR/training.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from shapo_jax.training.config import ALGORITHMS, TrainConfig
from shapo_jax.training.devices import use_cpu_devices
from shapo_jax.training.hyperparameters import TRACED_SETTINGS
from shapo_jax.training.presets import PRESETS, preset_overrides

CLI_FIELDS = {  # flag -> config field; every traced setting has a flag of its name too
    "env": "env", "algo": "algo", "total_steps": "total_steps", "num_envs": "num_envs",
    "seeds": "num_seeds", "seed": "seed", **{s.name: s.name for s in TRACED_SETTINGS},
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shapo-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
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
    parser.add_argument("--out", default="runs/latest", help="output directory")
    parser.add_argument("--resume", metavar="DIR", help="continue the run in DIR")
    parser.add_argument("--distributed", action="store_true",
                        help="call jax.distributed.initialize() first (multi-host)")
    add_cpu_devices_argument(parser)
    parser.add_argument("--no-plot", action="store_true")
    return parser


def add_cpu_devices_argument(parser: argparse.ArgumentParser) -> None:
    """--cpu-devices N, shared by shapo-train and shapo-sweep (see `use_cpu_devices`)."""
    parser.add_argument("--cpu-devices", type=int, metavar="N",
                        help="split the CPU into N XLA devices and shard the envs over them "
                             "(CPU-only machines: one per core; a run warns when a device's "
                             "batch is too large for its task)")


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
    except (ValueError, TypeError, json.JSONDecodeError) as error:
        _fail(str(error))

    import jax

    if args.cpu_devices is not None:
        try:
            use_cpu_devices(args.cpu_devices)
        except (ValueError, RuntimeError) as error:
            _fail(str(error))
    if args.distributed:
        jax.distributed.initialize()
    from shapo_jax.training.runner import Runner

    try:
        env = config.make_env()
        runner = Runner(config, env, out, resume=bool(args.resume))
    except (ValueError, FileNotFoundError) as error:
        _fail(str(error))
    summary = runner.train(plot=not args.no_plot)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
