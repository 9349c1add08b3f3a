"""Throughput, compile time and peak memory of one task over batch sizes, on this machine's
accelerator (whatever `jax.devices()` lists: GPU, TPU, or the CPU as fallback).

For every batch size (`--num-envs`) and measurement (`--measures`):
  raw        the trainer's `rollout` (auto-reset, episode bookkeeping) with uniformly random
             actions for `--raw-steps` steps: `throughput` of scripts/bench_envs.py;
  <algo>     training (rollout, GAE, multiplier, policy and critic update) through the
             trainer's `TrainingProgram` (one member, the env batch sharded over all
             devices, as shapo-train runs it): `--updates` updates per compiled call,
             `--warmup` untimed calls, then `--repeats` timed calls.
Each configuration runs in its own subprocess with a timeout (`--timeout`, and the whole run
within `--budget` seconds), so an out-of-memory error or a hang costs that row only; it is
reported as failed or skipped. Peak memory is the allocator's `peak_bytes_in_use` of the
busiest device where the platform reports one (GPU, TPU), else the process's peak resident
set size (CPU). The Markdown table (device, jax version and the command above it) goes to
stdout and, rewritten atomically after every configuration, to `--out`.

    scripts/bench_accelerator.sh --out runs/bench_accelerator.md
    scripts/bench_accelerator.sh --num-envs 4096 16384 65536 --measures raw ppo_lag
    scripts/bench_accelerator.sh --env TinyHazardNav --num-envs 64 128 --timeout 120
    scripts/bench_accelerator.sh --env SafetyPointGoal1 --num-envs 64 --cpu-devices 2

On a GPU JAX preallocates 75% of its memory (XLA_PYTHON_CLIENT_MEM_FRACTION changes that);
`peak_bytes_in_use` counts what the programs actually used.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shlex
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULT_MARKER = "BENCH_ACCELERATOR_RESULT "
DEFAULT_SIZES = (4096, 8192, 16384, 32768, 65536)
DEFAULT_MEASURES = ("raw", "ppo_lag", "shapo_ppo_lag")
MIN_CHILD_SECONDS = 20.0  # a configuration is not started with less of the budget left


# ---------------------------------------------------------------------------- the child
def peak_memory() -> tuple[int, str]:
    """(bytes, what they are): the busiest device's peak allocation, else the process's peak
    resident set size."""
    import jax

    peaks = []
    for device in jax.local_devices():
        try:
            stats = device.memory_stats()
        except Exception:  # noqa: BLE001 (platforms without memory statistics raise or not)
            stats = None
        if stats and "peak_bytes_in_use" in stats:
            peaks.append(int(stats["peak_bytes_in_use"]))
    if peaks:
        return max(peaks), "device peak_bytes_in_use"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss * (1 if sys.platform == "darwin" else 1024), "process peak RSS"


def device_info() -> dict[str, Any]:
    import jax
    import mujoco

    devices = jax.devices()
    return {"platform": devices[0].platform, "device_kind": devices[0].device_kind,
            "devices": len(devices), "jax": jax.__version__, "mujoco": mujoco.__version__}


def train_config_fields(args: argparse.Namespace, algo: str) -> dict[str, Any]:
    """TrainConfig fields of one training measurement (`--set` last)."""
    fields: dict[str, Any] = {
        "env": args.env, "env_options": args.env_options, "algo": algo,
        "num_envs": args.num_envs[0], "rollout_length": args.rollout_length,
    }
    calls = args.warmup + args.repeats
    fields["total_steps"] = args.num_envs[0] * args.rollout_length * args.updates * calls
    fields.update(args.settings)
    return fields


def measure_training(args: argparse.Namespace, env: Any, algo: str) -> dict[str, Any]:
    """Training env steps per second through `TrainingProgram`, compile time apart."""
    import jax

    from shapo_jax.training import TrainConfig
    from shapo_jax.training.devices import make_mesh
    from shapo_jax.training.program import TrainingProgram, member_hyperparameters

    config = TrainConfig(**train_config_fields(args, algo))
    program = TrainingProgram(config, make_mesh(), env)
    hp = member_hyperparameters([config.traced_values()])
    state = program.init([config.seed], hp)
    step = program.compiled_chunk(state, hp, args.updates)
    for _ in range(args.warmup):
        state, metrics = step(state, hp)
        jax.block_until_ready((state, metrics))
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        state, metrics = step(state, hp)
        jax.block_until_ready((state, metrics))
        seconds.append(time.perf_counter() - start)
    per_call = statistics.median(seconds)
    note = program.batching_note(1)
    return {"sps": config.env_steps_per_update * args.updates / per_call,
            "ms_per_update": 1e3 * per_call / args.updates,
            "compile_s": program.compile_seconds, "seconds": seconds,
            "note": "stepped in pieces (XLA:CPU LAPACK limit)" if note else ""}


def measure_raw(args: argparse.Namespace, env: Any) -> dict[str, Any]:
    """`throughput` of scripts/bench_envs.py (one warm-up call, one timed call)."""
    from bench_envs import throughput

    sps, compile_s = throughput(env, args.num_envs[0], args.raw_steps)
    return {"sps": sps, "ms_per_update": 1e3 * args.num_envs[0] * args.rollout_length / sps,
            "compile_s": compile_s, "note": ""}


def run_child(args: argparse.Namespace) -> None:
    """One configuration; prints its result as one marked JSON line."""
    if args.cpu_devices is not None:
        from shapo_jax.training.devices import use_cpu_devices

        use_cpu_devices(args.cpu_devices)
    import envs

    start = time.perf_counter()
    env = envs.make(args.env, **args.env_options)
    if args.child == "raw":
        result = measure_raw(args, env)
    else:
        result = measure_training(args, env, args.child)
    result["peak_bytes"], result["peak_kind"] = peak_memory()
    result.update(device_info())
    result["child_wall_s"] = time.perf_counter() - start
    print(RESULT_MARKER + json.dumps(result), flush=True)


# --------------------------------------------------------------------------- the parent
def child_command(args: argparse.Namespace, measure: str, num_envs: int) -> list[str]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", measure,
               "--env", args.env, "--num-envs", str(num_envs),
               "--rollout-length", str(args.rollout_length), "--raw-steps", str(args.raw_steps),
               "--updates", str(args.updates), "--warmup", str(args.warmup),
               "--repeats", str(args.repeats)]
    if args.cpu_devices is not None:
        command += ["--cpu-devices", str(args.cpu_devices)]
    for item in args.env_option:
        command += ["--env-option", item]
    for item in args.set:
        command += ["--set", item]
    return command


def failure_reason(returncode: int, stderr: str) -> str:
    """A short reason for a failed child: out of memory, a signal, or its last error line."""
    text = stderr.lower()
    if "resource_exhausted" in text or "out of memory" in text:
        return "out of memory"
    if returncode < 0:
        name = signal.Signals(-returncode).name
        return f"killed by {name}" + (" (out of host memory?)" if name == "SIGKILL" else "")
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "error:" in line]
    last = (errors or lines or [f"exit status {returncode}"])[-1]
    return f"exit {returncode}: {last[:160]}"


def run_configuration(args: argparse.Namespace, measure: str, num_envs: int,
                      timeout: float) -> dict[str, Any]:
    """Run one configuration in a subprocess (its own process group, killed on timeout)."""
    command = child_command(args, measure, num_envs)
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
        status = "ok"
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        status = f"timeout after {timeout:.0f} s"
    except BaseException:  # Ctrl-C: do not leave the child running
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    wall = time.perf_counter() - start
    if args.log_dir:
        log = Path(args.log_dir) / f"{args.env}_{num_envs}_{measure}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"$ {shlex.join(command)}\n--- stdout\n{stdout}\n--- stderr\n{stderr}")
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT_MARKER)]
    if status == "ok" and lines:
        result = json.loads(lines[-1][len(RESULT_MARKER):])
    else:
        if status == "ok":
            status = failure_reason(process.returncode, stderr)
        tail = "\n".join(stderr.strip().splitlines()[-8:])
        print(f"[{args.env} {num_envs} {measure}] {status}\n{tail}", file=sys.stderr, flush=True)
        result = {"stderr_tail": tail}
    result.update({"measure": measure, "num_envs": num_envs, "status": status, "wall_s": wall})
    return result


def format_ms(ms: float) -> str:
    return f"{ms:,.0f}" if ms >= 100 else f"{ms:.3g}"


def format_bytes(count: int) -> str:
    if count >= 2**30:
        return f"{count / 2**30:.2f} GiB"
    return f"{count / 2**20:.0f} MiB"


def markdown(args: argparse.Namespace, results: list[dict[str, Any]], command: str,
             started: str, done: bool) -> str:
    """The header and the table of `results` (one row per configuration)."""
    info = next((r for r in results if r["status"] == "ok"), None)
    if info is None:
        machine = "device unknown (no configuration has finished)"
    else:
        machine = (f"{info['devices']} x {info['platform']} ({info['device_kind']}), "
                   f"jax {info['jax']}, mujoco {info['mujoco']}")
    peak_kind = info["peak_kind"] if info else "unknown"
    raw_sps = {r["num_envs"]: r["sps"] for r in results
               if r["measure"] == "raw" and r["status"] == "ok"}
    lines = [
        f"{args.env} on {machine}; {started}" + ("" if done else " (in progress)"),
        "",
        f"    {command}",
        "",
        f"Training: {args.rollout_length} steps per env per update, {args.updates} update(s) "
        f"per call, median of {args.repeats} timed call(s) after {args.warmup} warm-up(s); "
        f"raw: {args.raw_steps} steps, one timed call after a warm-up (its ms per update: "
        f"the {args.rollout_length} steps of one update). Peak memory: {peak_kind}.",
        "",
        "| envs | measurement | env steps/s | of raw | ms per update | compile s | peak memory "
        "| wall s |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        name = "raw env (random actions)" if r["measure"] == "raw" else r["measure"]
        if r["status"] != "ok":
            status = r["status"].replace("|", "/")
            lines.append(f"| {r['num_envs']:,} | {name} | {status} | | | | | "
                         f"{r['wall_s']:.0f} |")
            continue
        share = ""
        if r["measure"] != "raw" and r["num_envs"] in raw_sps:
            share = f"{r['sps'] / raw_sps[r['num_envs']]:.2g}"
        note = f" ({r['note']})" if r.get("note") else ""
        lines.append(f"| {r['num_envs']:,} | {name}{note} | {r['sps']:,.0f} | {share} | "
                     f"{format_ms(r['ms_per_update'])} | {r['compile_s']:.1f} | "
                     f"{format_bytes(r['peak_bytes'])} | {r['wall_s']:.0f} |")
    return "\n".join(lines) + "\n"


def run_parent(args: argparse.Namespace) -> None:
    from shapo_jax.io import atomic_write_json, atomic_write_text

    invoked = os.environ.get("BENCH_ACCELERATOR_COMMAND", "python scripts/bench_accelerator.py")
    command = shlex.join([invoked, *args.argv])
    started = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    configurations = [(n, m) for n in args.num_envs for m in args.measures]
    results: list[dict[str, Any]] = []
    begin = time.perf_counter()
    print(f"{len(configurations)} configuration(s), at most {args.timeout:.0f} s each, "
          f"{args.budget:.0f} s in all", file=sys.stderr, flush=True)
    for num_envs, measure in configurations:
        left = args.budget - (time.perf_counter() - begin)
        if left < MIN_CHILD_SECONDS:
            results.append({"measure": measure, "num_envs": num_envs, "wall_s": 0.0,
                            "status": f"skipped: time budget of {args.budget:.0f} s spent"})
        else:
            result = run_configuration(args, measure, num_envs, min(args.timeout, left))
            results.append(result)
            shown = (f"{result['sps']:,.0f} env steps/s, compile {result['compile_s']:.1f} s"
                     if result["status"] == "ok" else result["status"])
            print(f"[{num_envs} {measure}] {shown} ({result['wall_s']:.0f} s)",
                  file=sys.stderr, flush=True)
        if args.out:
            atomic_write_text(args.out, markdown(args, results, command, started, done=False))
    table = markdown(args, results, command, started, done=True)
    print(table, end="")
    if args.out:
        atomic_write_text(args.out, table)
    if args.json:
        atomic_write_json(args.json, {"command": command, "started": started,
                                      "results": results})


# ---------------------------------------------------------------------------- arguments
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from shapo_jax.training.config import ALGORITHMS

    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="SafetyPointGoal1")
    parser.add_argument("--num-envs", nargs="+", type=int, default=list(DEFAULT_SIZES))
    parser.add_argument("--measures", nargs="+", default=list(DEFAULT_MEASURES),
                        help=f"raw and/or algorithms ({', '.join(ALGORITHMS)})")
    parser.add_argument("--rollout-length", type=int, default=32,
                        help="training steps per env per update")
    parser.add_argument("--raw-steps", type=int, default=None,
                        help="steps of the raw measurement (default: --rollout-length)")
    parser.add_argument("--updates", type=int, default=1, help="updates per compiled call")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls after compiling")
    parser.add_argument("--repeats", type=int, default=1, help="timed calls (median)")
    parser.add_argument("--timeout", type=float, default=150.0,
                        help="seconds for one configuration (start-up and compile included)")
    parser.add_argument("--budget", type=float, default=480.0,
                        help="seconds for the whole run; configurations left are skipped")
    parser.add_argument("--cpu-devices", type=int, default=None,
                        help="on a CPU, split it into N XLA devices (no effect on a GPU)")
    parser.add_argument("--env-option", action="append", default=[], metavar="KEY=VALUE",
                        help="environment override passed to envs.make (JSON value); "
                             "repeatable")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="TrainConfig field for the training measurements (JSON value), "
                             "e.g. num_minibatches=8; repeatable")
    parser.add_argument("--out", default=None, help="write the Markdown table here as well")
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="write all results as JSON to PATH")
    parser.add_argument("--log-dir", default=None,
                        help="keep each configuration's stdout and stderr in this folder")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = argv
    if args.raw_steps is None:
        args.raw_steps = args.rollout_length

    bad_sizes = [n for n in args.num_envs if n < 1]
    if bad_sizes:
        parser.error(f"--num-envs must be positive, got {bad_sizes}")
    valid = ("raw", *ALGORITHMS)
    bad = [m for m in args.measures if m not in valid]
    if bad or (args.child is not None and args.child not in valid):
        parser.error(f"unknown measurement(s) {bad or [args.child]}; valid: {', '.join(valid)}")
    for name in ("rollout_length", "raw_steps", "updates", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    if args.cpu_devices is not None and args.cpu_devices < 1:
        parser.error(f"--cpu-devices must be >= 1, got {args.cpu_devices}")
    if not (args.timeout > 0 and args.budget > 0):
        parser.error(f"--timeout and --budget must be > 0, got {args.timeout} and "
                     f"{args.budget}")
    args.env_options = parse_pairs(parser, "--env-option", args.env_option)
    args.settings = parse_pairs(parser, "--set", args.set)
    check_names(parser, args)
    return args


def parse_pairs(parser: argparse.ArgumentParser, flag: str, items: list[str]) -> dict[str, Any]:
    """KEY=VALUE items as a dict, each value JSON where it parses, else the string."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            parser.error(f"{flag} expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


def check_names(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Unknown env, env options or TrainConfig fields fail here, before any subprocess (the
    parent never starts a JAX backend: on a GPU that would take memory from the children)."""
    import dataclasses

    import envs
    from shapo_jax.training import TrainConfig

    try:
        envs.registry.check_overrides(args.env, args.env_options)
    except ValueError as error:
        parser.error(str(error))
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    reserved = {"env", "env_options", "algo", "num_envs", "rollout_length", "total_steps"}
    bad = sorted(set(args.settings) - (fields - reserved))
    if bad:
        parser.error(f"--set: unknown or reserved TrainConfig field(s) {bad}; the reserved "
                     f"ones have their own flags: {sorted(reserved)}")
    if args.child is None:
        for algo in (m for m in args.measures if m != "raw"):
            for n in args.num_envs:
                fields = train_config_fields(args, algo)
                fields["num_envs"] = n
                fields["total_steps"] = n * args.rollout_length
                try:
                    TrainConfig(**fields)
                except (TypeError, ValueError) as error:
                    parser.error(f"{algo} at {n} envs: {error}")


def main() -> None:
    args = parse_args()
    if args.child is not None:
        if len(args.num_envs) != 1:
            sys.exit(f"error: a child runs one batch size, got {args.num_envs}")
        run_child(args)
    else:
        run_parent(args)


if __name__ == "__main__":
    main()
