"""MJX against MuJoCo C on the same MJCF: env steps per second, side by side, in one run.

The task's MuJoCo model (`env.mj_model`, SafetyPointGoal1 by default) is stepped two ways
from the same initial states with the same random controls, for `--steps` env steps of
`frame_skip` physics sub-steps each (as the env does):
  MJX  `mjx.put_model`, a jitted `lax.scan` over env steps of `frame_skip` vmapped
       `mjx.step`s, the env axis sharded over all devices (`--cpu-devices N` splits a CPU
       into N); on a CPU the batch is stepped in sequential pieces of at most
       `--max-device-batch` envs per device (default: the size below which XLA:CPU's batched
       Cholesky runs inline, 823 for SafetyPointGoal1; BENCHMARKS.md);
  C    `mujoco.rollout` with a pool of `--threads` threads (one MjData each), each control
       repeated over the `frame_skip` sub-steps; the batch is stepped in pieces so that the
       state trajectory `rollout` writes stays under `--c-buffer-mb`.
Only the physics is stepped (no reward, observation, reset, or gremlin targets; MJX builds its
batch of `mjx.Data` from the initial qpos/qvel inside the compiled call, a few fills). Initial
states are the env's reset states (random layouts) with a random joint velocity per env
(`--qvel-noise`); controls are uniform over each actuator's control range. Reported: env steps
per second of both (median of `--repeats` timed runs; MJX after one untimed warm-up call),
MJX's compile time, the ratio MJX / C, and with `--check` the max and median |qpos_MJX -
qpos_C| after each env step (MJX in float32, C in float64: they agree closely for a few steps
and then drift apart, contacts being chaotic).

    .venv/bin/python scripts/bench_mjx_vs_c.py --num-envs 64 --steps 10 --check
    .venv/bin/python scripts/bench_mjx_vs_c.py --num-envs 1024 --steps 20 --threads 2 \\
        --cpu-devices 2 --repeats 3 --json runs/mjx_vs_c.json
    .venv/bin/python scripts/bench_mjx_vs_c.py --num-envs 8192 --steps 50 \\
        --env-option solver=cg --env-option jacobian=sparse
    # on a GPU machine (MJX on the GPU, C on all its CPU cores):
    .venv/bin/python scripts/bench_mjx_vs_c.py --num-envs 32768 --steps 50 --check
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import mujoco
import mujoco.rollout
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec
from mujoco import mjx

import envs
from shapo_jax.io import atomic_write_json
from shapo_jax.training.cli import add_env_option_argument, merge_env_options
from shapo_jax.training.devices import (
    ENV_AXIS,
    env_pieces,
    lapack_batch_limit,
    make_mesh,
    use_cpu_devices,
)

STATE_SPEC = mujoco.mjtState.mjSTATE_FULLPHYSICS


def physics_of(env: Any) -> tuple[mujoco.MjModel, int]:
    """(MuJoCo model, physics sub-steps per env step) of an env, through its wrappers."""
    model = getattr(env, "mj_model", None)
    config = getattr(env, "config", None)
    if isinstance(model, mujoco.MjModel) and hasattr(config, "frame_skip"):
        return model, int(config.frame_skip)
    sys_model = getattr(getattr(env, "sys", None), "mj_model", None)  # Brax PipelineEnv
    if isinstance(sys_model, mujoco.MjModel) and hasattr(env, "_n_frames"):
        return sys_model, int(env._n_frames)  # noqa: SLF001 (Brax has no public accessor)
    raise ValueError(f"{type(env).__name__} exposes no MuJoCo model with a frame skip "
                     f"(mj_model and config.frame_skip, or Brax's sys.mj_model and _n_frames)")


def initial_states(env: Any, model: mujoco.MjModel, num_envs: int, qvel_noise: float,
                   seed: int) -> dict[str, np.ndarray]:
    """qpos, qvel, mocap_pos, mocap_quat of `num_envs` reset states (float32 values, so that
    MJX and C start from the same numbers), each with a random joint velocity added."""
    keys = jax.random.split(jax.random.PRNGKey(seed), num_envs)
    state = jax.jit(jax.vmap(env.reset))(keys)
    data = state.pipeline_state
    data = getattr(data, "data", data)  # navigation: NavState.data; Brax: the pipeline state
    rng = np.random.default_rng(seed)
    out = {
        "qpos": np.asarray(data.qpos, np.float32),
        "qvel": np.asarray(data.qvel, np.float32)
        + rng.normal(0.0, qvel_noise, (num_envs, model.nv)).astype(np.float32),
        "mocap_pos": np.asarray(data.mocap_pos, np.float32).reshape(num_envs, model.nmocap, 3),
        "mocap_quat": np.asarray(data.mocap_quat, np.float32).reshape(num_envs, model.nmocap, 4),
    }
    if out["qpos"].shape != (num_envs, model.nq):
        raise ValueError(f"reset qpos has shape {out['qpos'].shape}, expected "
                         f"{(num_envs, model.nq)}")
    return out


def random_controls(model: mujoco.MjModel, num_envs: int, steps: int, seed: int) -> np.ndarray:
    """(steps, num_envs, nu) float32 controls, uniform over each actuator's ctrlrange
    ([-1, 1] for an actuator without limits)."""
    low, high = np.full(model.nu, -1.0), np.full(model.nu, 1.0)
    limited = model.actuator_ctrllimited.astype(bool)
    low[limited], high[limited] = model.actuator_ctrlrange[limited].T
    rng = np.random.default_rng(seed + 1)
    return rng.uniform(low, high, (steps, num_envs, model.nu)).astype(np.float32)


# ------------------------------------------------------------------------------------- MJX
class MjxStepper:
    """The compiled MJX rollout of one piece of the batch, sharded over all devices."""

    def __init__(self, model: mujoco.MjModel, frame_skip: int, piece: int, steps: int,
                 record: bool):
        self.mesh = make_mesh()
        self.split = NamedSharding(self.mesh, PartitionSpec(ENV_AXIS))
        self.split_ctrl = NamedSharding(self.mesh, PartitionSpec(None, ENV_AXIS))
        mx = mjx.put_model(model)
        template = mjx.make_data(mx)

        def run(qpos, qvel, mocap_pos, mocap_quat, ctrl):
            def init(q, v, mp, mq):
                return template.replace(qpos=q, qvel=v, mocap_pos=mp, mocap_quat=mq)

            data = jax.vmap(init)(qpos, qvel, mocap_pos, mocap_quat)
            batched_step = jax.vmap(mjx.step, in_axes=(None, 0))

            def env_step(d, u):
                d = d.replace(ctrl=u)
                d, _ = jax.lax.scan(lambda d, _: (batched_step(mx, d), None), d, None,
                                    length=frame_skip)
                return d, (d.qpos if record else None)

            data, trajectory = jax.lax.scan(env_step, data, ctrl)
            return data.qpos, trajectory

        shapes = (jax.ShapeDtypeStruct((piece, model.nq), jnp.float32),
                  jax.ShapeDtypeStruct((piece, model.nv), jnp.float32),
                  jax.ShapeDtypeStruct((piece, model.nmocap, 3), jnp.float32),
                  jax.ShapeDtypeStruct((piece, model.nmocap, 4), jnp.float32),
                  jax.ShapeDtypeStruct((steps, piece, model.nu), jnp.float32))
        trajectory_sharding = NamedSharding(self.mesh, PartitionSpec(None, ENV_AXIS))
        start = time.perf_counter()
        self.compiled = jax.jit(
            run, in_shardings=(self.split,) * 4 + (self.split_ctrl,),
            out_shardings=(self.split, trajectory_sharding if record else None),
        ).lower(*shapes).compile()
        self.compile_s = time.perf_counter() - start

    def place(self, states: dict[str, np.ndarray], controls: np.ndarray,
              lo: int, hi: int) -> tuple[jax.Array, ...]:
        """Envs lo:hi's inputs on the devices (outside the timing)."""
        arrays = [jax.device_put(states[k][lo:hi], self.split)
                  for k in ("qpos", "qvel", "mocap_pos", "mocap_quat")]
        return (*arrays, jax.device_put(controls[:, lo:hi], self.split_ctrl))


# --------------------------------------------------------------------------------------- C
def c_initial_states(model: mujoco.MjModel, states: dict[str, np.ndarray]) -> np.ndarray:
    """(num_envs, nstate) mjSTATE_FULLPHYSICS vectors of the initial states (time 0)."""
    data = mujoco.MjData(model)
    num_envs = states["qpos"].shape[0]
    out = np.empty((num_envs, mujoco.mj_stateSize(model, STATE_SPEC)))
    for i in range(num_envs):
        mujoco.mj_resetData(model, data)
        data.qpos[:] = states["qpos"][i]
        data.qvel[:] = states["qvel"][i]
        if model.nmocap:
            data.mocap_pos[:] = states["mocap_pos"][i]
            data.mocap_quat[:] = states["mocap_quat"][i]
        mujoco.mj_getState(model, data, out[i], STATE_SPEC)
    return out


def qpos_offset(model: mujoco.MjModel) -> int:
    """Where qpos starts in an mjSTATE_FULLPHYSICS vector (after the time)."""
    offset = mujoco.mj_stateSize(model, mujoco.mjtState.mjSTATE_TIME)
    data = mujoco.MjData(model)
    data.qpos[:] = np.arange(model.nq) + 0.5
    state = np.empty(mujoco.mj_stateSize(model, STATE_SPEC))
    mujoco.mj_getState(model, data, state, STATE_SPEC)
    if not np.array_equal(state[offset:offset + model.nq], data.qpos):
        raise AssertionError("unexpected layout of mjSTATE_FULLPHYSICS")
    return offset


class CStepper:
    """`mujoco.rollout` over the batch in pieces, with one thread pool and reused buffers."""

    def __init__(self, model: mujoco.MjModel, frame_skip: int, num_envs: int, steps: int,
                 threads: int, buffer_mb: float):
        self.model, self.frame_skip, self.nstep = model, frame_skip, steps * frame_skip
        self.threads = threads
        nstate = mujoco.mj_stateSize(model, STATE_SPEC)
        per_env = self.nstep * (nstate + model.nsensordata) * 8
        # at least a few envs per thread, so that the pool stays busy
        self.piece = min(max(int(buffer_mb * 2**20) // per_env, 4 * threads, 1), num_envs)
        self.datas = [mujoco.MjData(model) for _ in range(threads)]
        # nthread=0 runs on the calling thread; mujoco.rollout.rollout() does the same for a
        # single MjData
        self.pool = mujoco.rollout.Rollout(nthread=threads if threads > 1 else 0)
        self.state = np.empty((self.piece, self.nstep, nstate))
        self.sensordata = np.empty((self.piece, self.nstep, model.nsensordata))

    def run(self, initial: np.ndarray, controls: np.ndarray,
            on_piece=None) -> None:
        """Roll out all envs; `on_piece(lo, hi, state)` sees each piece's state trajectory."""
        for lo in range(0, initial.shape[0], self.piece):
            hi = min(lo + self.piece, initial.shape[0])
            state, _ = self.pool.rollout(
                self.model, self.datas, initial[lo:hi], controls[lo:hi], nstep=self.nstep,
                state=self.state[: hi - lo], sensordata=self.sensordata[: hi - lo])
            if on_piece is not None:
                on_piece(lo, hi, state)

    def close(self) -> None:
        self.pool.close()


# ------------------------------------------------------------------------------------ main
def differences(mjx_qpos: np.ndarray, c_qpos: np.ndarray) -> list[dict[str, float]]:
    """Per env step: max and median |qpos_MJX - qpos_C| over envs and coordinates."""
    diff = np.abs(mjx_qpos.astype(np.float64) - c_qpos)  # (steps, envs, nq)
    return [{"step": t + 1, "max": float(d.max()), "median": float(np.median(d))}
            for t, d in enumerate(diff)]


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="SafetyPointGoal1")
    parser.add_argument("--num-envs", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=20, help="env steps per timed run")
    parser.add_argument("--threads", type=int, default=usable_cores(),
                        help="threads of the C rollout (default: the CPUs this process may use)")
    parser.add_argument("--cpu-devices", type=int, default=None,
                        help="split the CPU into N XLA devices for MJX (no effect on a GPU)")
    parser.add_argument("--max-device-batch", type=int, default=None,
                        help="MJX envs per device per call; larger batches are stepped in "
                             "sequential pieces (default on a CPU: the safe Cholesky batch)")
    parser.add_argument("--c-buffer-mb", type=float, default=256.0,
                        help="memory for the state trajectory of one C rollout call")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the median is kept")
    parser.add_argument("--qvel-noise", type=float, default=0.05,
                        help="standard deviation of the random initial joint velocities")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", action="store_true",
                        help="compare the qpos trajectories of MJX and C")
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="write the results as JSON to PATH ('-': stdout)")
    add_env_option_argument(parser)
    args = parser.parse_args(argv)
    for name in ("num_envs", "steps", "threads", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.cpu_devices is not None and args.cpu_devices < 1:
        parser.error(f"--cpu-devices must be >= 1, got {args.cpu_devices}")
    if args.max_device_batch is not None and args.max_device_batch < 1:
        parser.error(f"--max-device-batch must be >= 1, got {args.max_device_batch}")
    if not args.c_buffer_mb > 0:
        parser.error(f"--c-buffer-mb must be > 0, got {args.c_buffer_mb}")
    if not args.qvel_noise >= 0:
        parser.error(f"--qvel-noise must be >= 0, got {args.qvel_noise}")
    try:
        args.env_options = merge_env_options({}, args.env_option)
    except ValueError as error:
        parser.error(str(error))
    return args


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.cpu_devices is not None:
        use_cpu_devices(args.cpu_devices)  # before JAX's first computation
    try:
        env = envs.make(args.env, **args.env_options)
        model, frame_skip = physics_of(env)
    except ValueError as error:
        sys.exit(f"error: {error}")
    devices = jax.devices()
    platform = devices[0].platform
    n, steps = args.num_envs, args.steps
    if n % len(devices):
        sys.exit(f"error: --num-envs {n} is not divisible by the {len(devices)} devices; "
                 f"use a multiple of {len(devices)}")
    limit = args.max_device_batch or lapack_batch_limit(env, platform)
    pieces = env_pieces(n, len(devices), 1, limit)  # the trainer's rule (environments.md §13)
    piece = n // pieces
    log(f"{args.env}: nq={model.nq} nv={model.nv} nu={model.nu}, {frame_skip} sub-steps of "
        f"{model.opt.timestep} s per env step; MJX on {len(devices)} {platform} device(s) "
        f"({devices[0].device_kind}), {pieces} piece(s) of {piece // len(devices)} envs per "
        f"device; C on {args.threads} thread(s)")

    states = initial_states(env, model, n, args.qvel_noise, args.seed)
    controls = random_controls(model, n, steps, args.seed)  # (steps, envs, nu)

    stepper = MjxStepper(model, frame_skip, piece, steps, record=args.check)
    log(f"MJX compiled in {stepper.compile_s:.1f} s")
    placed = [stepper.place(states, controls, i * piece, (i + 1) * piece)
              for i in range(pieces)]

    def run_mjx() -> list[Any]:
        outs = [stepper.compiled(*inputs) for inputs in placed]
        jax.block_until_ready(outs)
        return outs

    c_initial = c_initial_states(model, states)
    c_controls = np.repeat(np.ascontiguousarray(controls.transpose(1, 0, 2), np.float64),
                           frame_skip, axis=1)  # (envs, steps * frame_skip, nu)
    c = CStepper(model, frame_skip, n, steps, args.threads, args.c_buffer_mb)

    mjx_outs = run_mjx()  # warm-up (first-call allocations), not timed
    mjx_times, c_times = [], []
    for _ in range(args.repeats):  # interleaved, so that both see the same machine state
        start = time.perf_counter()
        run_mjx()
        mjx_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        c.run(c_initial, c_controls)
        c_times.append(time.perf_counter() - start)

    result: dict[str, Any] = {
        "env": args.env, "env_options": args.env_options, "num_envs": n, "steps": steps,
        "frame_skip": frame_skip, "repeats": args.repeats,
        "jax": jax.__version__, "mujoco": mujoco.__version__, "platform": platform,
        "device_kind": devices[0].device_kind, "mjx_devices": len(devices),
        "mjx_pieces": pieces, "c_threads": args.threads, "c_piece": c.piece,
        "mjx_compile_s": stepper.compile_s,
        "mjx_seconds": mjx_times, "c_seconds": c_times,
        "mjx_sps": n * steps / statistics.median(mjx_times),
        "c_sps": n * steps / statistics.median(c_times),
    }
    result["mjx_over_c"] = result["mjx_sps"] / result["c_sps"]

    if args.check:
        offset = qpos_offset(model)
        c_qpos = np.empty((steps, n, model.nq))

        def keep(lo: int, hi: int, state: np.ndarray) -> None:
            after_step = state[:, frame_skip - 1::frame_skip, offset:offset + model.nq]
            c_qpos[:, lo:hi] = after_step.transpose(1, 0, 2)

        c.run(c_initial, c_controls, on_piece=keep)
        mjx_qpos = np.concatenate([np.asarray(out[1]) for out in mjx_outs], axis=1)
        result["qpos_diff"] = differences(mjx_qpos, c_qpos)
    c.close()

    print(f"{args.env}, {n} envs x {steps} env steps ({frame_skip} sub-steps each), "
          f"jax {jax.__version__}, mujoco {mujoco.__version__}")
    print("| engine | parallelism | env steps/s | physics steps/s | compile s |")
    print("|---|---|---:|---:|---:|")
    print(f"| MJX | {len(devices)} x {platform} ({devices[0].device_kind}) | "
          f"{result['mjx_sps']:,.0f} | {result['mjx_sps'] * frame_skip:,.0f} | "
          f"{stepper.compile_s:.1f} |")
    print(f"| MuJoCo C (rollout) | {args.threads} thread(s) | {result['c_sps']:,.0f} | "
          f"{result['c_sps'] * frame_skip:,.0f} | - |")
    print(f"MJX / C = {result['mjx_over_c']:.3f}")
    if args.check:
        print("| after env step | max abs qpos diff | median abs qpos diff |")
        print("|---:|---:|---:|")
        shown = sorted({1, 2, 3, 5, 10, 20, 50, 100, 200, 500, steps} & set(range(1, steps + 1)))
        for t in shown:
            d = result["qpos_diff"][t - 1]
            print(f"| {t} | {d['max']:.3g} | {d['median']:.3g} |")
    if args.json == "-":
        print(json.dumps(result, indent=2))
    elif args.json:
        atomic_write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
