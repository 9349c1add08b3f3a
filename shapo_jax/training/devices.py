"""Sharding a run over all devices (and hosts) with `jax.sharding`.

The environment batch is split over a one-axis mesh named "envs"; parameters, optimiser
states and statistics are replicated. The program itself is unchanged: XLA's partitioner
inserts the cross-device means of the gradients (every loss is a mean over the whole batch),
so 1 device and N devices compute the same run up to floating-point rounding.

Multi-host: call `jax.distributed.initialize()` on every host before anything else (the CLI's
`--distributed` flag does); `jax.devices()` then lists the devices of all hosts and the same
code shards the environments over all of them.
"""

from __future__ import annotations

import os
import re
from collections.abc import MutableMapping, Sequence

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from shapo_jax.training.train import TrainState

ENV_AXIS = "envs"
HOST_DEVICE_FLAG = "--xla_force_host_platform_device_count"


def use_cpu_devices(count: int, environ: MutableMapping[str, str] | None = None) -> None:
    """Split the CPU into `count` XLA devices; call before JAX's first computation.

    Why: XLA:CPU runs one MJX program on about one core (SafetyPointGoal1, 512 envs: 2,563
    env steps/s on one core, 2,743 on two), so on a CPU-only machine sharding the env axis
    over one device per core trains about 1.7x faster (BENCHMARKS.md). It also keeps each
    Only the CPU platform is split; on a GPU machine `jax.devices()` still lists the GPUs.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"cpu devices must be a positive integer, got {count!r}")
    environ = os.environ if environ is None else environ
    flags = environ.get("XLA_FLAGS", "")
    match = re.search(re.escape(HOST_DEVICE_FLAG) + r"=(\d+)", flags)
    if match:
        if int(match.group(1)) != count:
            raise ValueError(f"XLA_FLAGS already sets {HOST_DEVICE_FLAG}={match.group(1)}; "
                             f"drop it or ask for {match.group(1)} cpu devices, not {count}")
        return
    if environ is os.environ:
        from jax._src import xla_bridge

        if xla_bridge.backends_are_initialized():
            raise RuntimeError("JAX's backends are already running; call use_cpu_devices() "
                               "before the first JAX computation")
    environ["XLA_FLAGS"] = f"{flags} {HOST_DEVICE_FLAG}={count}".strip()


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def auto_cpu_devices(num_envs: Sequence[int], cores: int | None = None) -> int:
    """The CPU split of `--cpu-devices auto`: the most devices, at most one per core, that
    divide every batch in `num_envs` (XLA:CPU runs one MJX program on about one core, so one
    device per core trains about 1.8x faster on two cores: BENCHMARKS.md)."""
    cores = usable_cores() if cores is None else cores
    return max(d for d in range(1, max(cores, 1) + 1) if all(n % d == 0 for n in num_envs))


# jaxlib's batched LAPACK kernels run a batch inline while batch * cost < 200,000 flops and
# split it over the XLA:CPU thread pool above that; a Cholesky costs n^3 / 3 per matrix.
LAPACK_INLINE_WORK = 200_000


def _mujoco_model(env: object) -> object | None:
    """The MuJoCo or MJX model behind `env` (through wrappers), or None if there is none."""
    for _ in range(16):
        for name in ("mj_model", "sys"):
            model = getattr(env, name, None)
            if model is not None and isinstance(getattr(model, "nv", None), int):
                return model
        env = getattr(env, "env", None)
        if env is None:
            return None
    return None


def needs_lapack(model: object) -> bool:
    """Whether MJX calls LAPACK (a Cholesky) when stepping `model`.

    MJX factorises the mass matrix densely unless the Jacobian is sparse (jacobian "sparse",
    or "auto" with nv >= 60), the Newton solver factorises its Hessian, and the implicit
    integrator its own matrix; CG with a sparse Jacobian and an explicit integrator needs none.
    A model without these options counts as needing LAPACK.
    """
    import mujoco

    opt = getattr(model, "opt", None)
    try:
        solver, jacobian = int(opt.solver), int(opt.jacobian)
        integrator = int(opt.integrator)
    except (AttributeError, TypeError):
        return True
    sparse = jacobian == int(mujoco.mjtJacobian.mjJAC_SPARSE) or (
        jacobian == int(mujoco.mjtJacobian.mjJAC_AUTO) and model.nv >= 60)
    return (solver != int(mujoco.mjtSolver.mjSOL_CG) or not sparse
            or integrator == int(mujoco.mjtIntegrator.mjINT_IMPLICIT))


def lapack_batch_limit(env: object, platform: str) -> int | None:
    """The most envs of `env` that one XLA:CPU LAPACK call may take without waiting.

    MJX's Newton solver factorises an nv x nv matrix per env; jaxlib's batched kernels run a
    batch inline while batch * nv^3 / 3 < LAPACK_INLINE_WORK and above that split it over the
    thread pool that runs the program and wait for the pieces, which can deadlock (module
    docstring of `shapo_jax.rollout.pieces`, BENCHMARKS.md). None when there is no limit: the
    platform is not "cpu", the env has no MuJoCo model, or its physics needs no LAPACK
    (`needs_lapack`: CG solver, sparse Jacobian).
    """
    model = _mujoco_model(env)
    if platform != "cpu" or model is None or not needs_lapack(model):
        return None
    return max((LAPACK_INLINE_WORK - 1) // max(model.nv**3 // 3, 1), 1)


def env_pieces(num_envs: int, num_devices: int, num_members: int, limit: int | None) -> int:
    """How many sequential pieces one device's envs are stepped in (`vmap_in_pieces`).

    The fewest pieces k, k dividing the device's num_envs / num_devices envs, such that one
    batched call, which under `jax.vmap` over members holds every member's piece, has at
    most `limit` envs: num_members * num_envs / (num_devices * k) <= limit. 1 without a
    limit. Raises ValueError when the members alone exceed the limit.
    """
    per_device = num_envs // num_devices
    if limit is None or num_members * per_device <= limit:
        return 1
    if num_members > limit:
        raise ValueError(
            f"{num_members} members in one program exceed the {limit} envs that one XLA:CPU "
            f"LAPACK call of this task can take without risking a hang; run at most {limit} "
            f"seeds x settings per program (shapo-train --seeds, shapo-sweep "
            f"--max-group-size) or step a Point task with --env-option solver=cg "
            f"--env-option jacobian=sparse (no LAPACK)")
    return next(k for k in range(1, per_device + 1)
                if per_device % k == 0 and num_members * (per_device // k) <= limit)


def make_mesh(devices: list | None = None) -> Mesh:
    """A one-axis mesh over `devices` (default: every device of every host)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(devices, (ENV_AXIS,))


def check_divisible(num_envs: int, mesh: Mesh) -> None:
    """num_envs must split evenly over the devices; raise a clear error otherwise."""
    count = mesh.devices.size
    if num_envs % count:
        raise ValueError(
            f"num_envs={num_envs} is not divisible by the {count} devices; "
            f"use a multiple of {count}"
        )


def state_sharding(state_shape: TrainState, mesh: Mesh, leading_axes: int = 0,
                   by_member: bool = False) -> TrainState:
    """Shardings for a TrainState: env fields split on their env axis, the rest replicated.

    `leading_axes` counts axes before the env axis (1 when seeds or settings are vmapped).
    `by_member`: instead split every field on its leading (member) axis, so that each device
    trains whole members, their envs and their update, with no communication.
    """
    if by_member:
        members = NamedSharding(mesh, PartitionSpec(ENV_AXIS))
        return jax.tree_util.tree_map(lambda _: members, state_shape)
    replicated = NamedSharding(mesh, PartitionSpec())
    split = NamedSharding(mesh, PartitionSpec(*([None] * leading_axes), ENV_AXIS))
    shardings = jax.tree_util.tree_map(lambda _: replicated, state_shape)
    return shardings.replace(
        env_state=jax.tree_util.tree_map(lambda _: split, state_shape.env_state),
        tracker=jax.tree_util.tree_map(lambda _: split, state_shape.tracker),
    )
