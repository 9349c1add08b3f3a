"""Splitting the CPU into XLA devices through XLA_FLAGS (the CLIs' --cpu-devices)."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest
from helpers import fresh_rng

from shapo_jax.training.devices import (
    HOST_DEVICE_FLAG,
    auto_cpu_devices,
    env_pieces,
    lapack_batch_limit,
    needs_lapack,
    use_cpu_devices,
)


def test_flag_added_after_existing_flags() -> None:
    environ = {"XLA_FLAGS": "--xla_cpu_enable_fast_math=false"}
    use_cpu_devices(3, environ)
    assert environ["XLA_FLAGS"].split() == ["--xla_cpu_enable_fast_math=false",
                                            f"{HOST_DEVICE_FLAG}=3"]
    empty: dict[str, str] = {}
    use_cpu_devices(1, empty)
    assert empty == {"XLA_FLAGS": f"{HOST_DEVICE_FLAG}=1"}


def test_same_count_already_set_is_kept_and_a_different_one_rejected() -> None:
    environ = {"XLA_FLAGS": f"{HOST_DEVICE_FLAG}=4"}
    use_cpu_devices(4, environ)
    assert environ["XLA_FLAGS"] == f"{HOST_DEVICE_FLAG}=4"
    with pytest.raises(ValueError, match="already sets .*=4.* not 2"):
        use_cpu_devices(2, environ)


@pytest.mark.parametrize("count", [0, -2, 1.5, True, "2"])
def test_bad_counts_are_rejected_by_name(count) -> None:
    with pytest.raises(ValueError, match=f"positive integer, got {count!r}"):
        use_cpu_devices(count, {})


def test_too_late_in_a_running_process_is_an_error() -> None:
    import jax

    jax.devices()  # the backends of this (test) process are running
    with pytest.raises(RuntimeError, match="before the first JAX computation"):
        use_cpu_devices(2)


class _Model:
    def __init__(self, nv: int):
        self.nv = nv


class _Env:
    def __init__(self, nv: int | None, wrapped: bool = False):
        inner = type("Inner", (), {})()
        if nv is not None:
            inner.mj_model = _Model(nv)
        self.env = inner if wrapped else None
        if not wrapped and nv is not None:
            self.mj_model = _Model(nv)


def test_lapack_batch_limit_matches_the_inline_rule() -> None:
    """The limit is the largest b with b * (nv^3 // 3) < 200,000 (brute force), on a CPU only."""
    rng = fresh_rng()
    for nv in rng.choice(np.arange(2, 60), 6, replace=False).tolist():
        cost = max(nv**3 // 3, 1)
        largest = max((b for b in range(1, 200_001) if b * cost < 200_000), default=1)
        for wrapped in (False, True):
            env = _Env(nv, wrapped)
            assert lapack_batch_limit(env, "cpu") == largest
            assert lapack_batch_limit(env, "gpu") is None
    assert lapack_batch_limit(_Env(None), "cpu") is None


def test_env_pieces_is_the_fewest_equal_pieces_under_the_limit() -> None:
    """Brute force over random batches: the pieces divide a device's envs, every batched call
    (members x piece) is within the limit, and no fewer pieces would be."""
    rng = fresh_rng()
    for _ in range(200):
        devices = int(rng.integers(1, 9))
        num_envs = devices * int(rng.integers(1, 700))
        members, limit = int(rng.integers(1, 9)), int(rng.integers(1, 900))
        per_device = num_envs // devices
        if members > limit:
            with pytest.raises(ValueError, match=f"{members} members .* {limit} envs"):
                env_pieces(num_envs, devices, members, limit)
            continue
        k = env_pieces(num_envs, devices, members, limit)
        assert per_device % k == 0 and members * per_device // k <= limit
        assert all(per_device % j or members * per_device // j > limit for j in range(1, k))
        assert env_pieces(num_envs, devices, members, None) == 1


def test_lapack_batch_limit_of_registered_tasks() -> None:
    import envs

    goal = envs.make("SafetyPointGoal1")
    nv = 3 + 6  # the Point's slide x, slide y and yaw hinge, plus the vase's free joint
    assert lapack_batch_limit(goal, "cpu") == (200_000 - 1) // (nv**3 // 3) == 823
    assert env_pieces(1024, 1, 2, 823) == 4  # the 2 seeds x 1024 envs, one device
    assert lapack_batch_limit(envs.make("TinyHazardNav"), "cpu") is None


def test_lapack_free_physics_has_no_batch_limit() -> None:
    """CG with a sparse Jacobian calls no LAPACK routine (the lowering test is in
    test_envs_navigation.py), so no batch is too large; Newton, a dense Jacobian or the
    implicit integrator each bring a Cholesky back."""
    import envs

    free = envs.make("SafetyPointGoal1", solver="cg", jacobian="sparse")
    assert not needs_lapack(free.env.mj_model)
    assert lapack_batch_limit(free, "cpu") is None
    # jacobian "auto" is sparse from nv = 60 on: PointGoal2 (nv 63) needs only solver="cg".
    goal2 = envs.make("SafetyPointGoal2", solver="cg")
    assert goal2.env.mj_model.nv >= 60 and lapack_batch_limit(goal2, "cpu") is None
    assert lapack_batch_limit(envs.make("SafetyPointGoal2"), "cpu") == 2
    # Below nv = 60 "auto" is dense: CG alone still factorises the mass matrix.
    assert lapack_batch_limit(envs.make("SafetyPointGoal1", solver="cg"), "cpu") == 823
    for change in ({"solver": "newton"}, {"jacobian": "dense"}, {"integrator": "implicit"}):
        model = free.env.mj_model
        kept = (model.opt.solver, model.opt.jacobian, model.opt.integrator)
        try:
            if "solver" in change:
                model.opt.solver = mujoco.mjtSolver.mjSOL_NEWTON
            if "jacobian" in change:
                model.opt.jacobian = mujoco.mjtJacobian.mjJAC_DENSE
            if "integrator" in change:
                model.opt.integrator = mujoco.mjtIntegrator.mjINT_IMPLICIT
            assert needs_lapack(model), change
        finally:
            model.opt.solver, model.opt.jacobian, model.opt.integrator = kept


def test_auto_cpu_devices_is_the_largest_split_that_divides_every_batch() -> None:
    rng = fresh_rng()
    for _ in range(100):
        cores = int(rng.integers(1, 17))
        batches = rng.integers(1, 4097, size=int(rng.integers(1, 4))).tolist()
        count = auto_cpu_devices(batches, cores)
        assert 1 <= count <= cores and all(b % count == 0 for b in batches)
        assert not any(all(b % d == 0 for b in batches) for d in range(count + 1, cores + 1))
    assert auto_cpu_devices([1024], 2) == 2 and auto_cpu_devices([1023], 2) == 1
