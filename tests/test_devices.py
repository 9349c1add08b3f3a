"""Splitting the CPU into XLA devices through XLA_FLAGS (the CLIs' --cpu-devices)."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from shapo_jax.training.devices import (
    HOST_DEVICE_FLAG,
    cpu_batch_warning,
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


def test_cpu_batch_warning_threshold_matches_the_lapack_inline_rule() -> None:
    """The largest safe batch is the largest b with b * (nv^3 // 3) < 200,000 (brute force)."""
    for nv in np.random.default_rng().choice(np.arange(2, 60), 6, replace=False).tolist():
        cost = max(nv**3 // 3, 1)
        largest = max((b for b in range(1, 200_001) if b * cost < 200_000), default=0)
        for wrapped in (False, True):
            env = _Env(nv, wrapped)
            if largest:
                assert cpu_batch_warning(env, largest, "cpu") is None
            message = cpu_batch_warning(env, largest + 1, "cpu")
            assert message is not None
            assert f"nv={nv}" in message and f"keep <= {largest} per device" in message
            assert cpu_batch_warning(env, largest + 1, "gpu") is None


def test_cpu_batch_warning_on_registered_tasks() -> None:
    import envs

    goal = envs.make("SafetyPointGoal1")
    nv = 3 + 6  # the Point's slide x, slide y and yaw hinge, plus the vase's free joint
    assert cpu_batch_warning(goal, 512, "cpu") is None
    warning = cpu_batch_warning(goal, 1024, "cpu")
    assert warning is not None and f"nv={nv}" in warning and "--cpu-devices 2" in warning
    assert cpu_batch_warning(envs.make("TinyHazardNav"), 10**6, "cpu") is None
    assert cpu_batch_warning(_Env(None), 10**6, "cpu") is None
    assert "--env-option solver=cg --env-option jacobian=sparse" in warning


def test_lapack_free_physics_has_no_batch_limit() -> None:
    """CG with a sparse Jacobian calls no LAPACK routine (the lowering test is in
    test_envs_navigation.py), so no batch is too large; Newton, a dense Jacobian or the
    implicit integrator each bring a Cholesky back."""
    import envs

    free = envs.make("SafetyPointGoal1", solver="cg", jacobian="sparse")
    assert not needs_lapack(free.env.mj_model)
    assert cpu_batch_warning(free, 10**6, "cpu") is None
    # jacobian "auto" is sparse from nv = 60 on: PointGoal2 (nv 63) needs only solver="cg".
    goal2 = envs.make("SafetyPointGoal2", solver="cg")
    assert goal2.env.mj_model.nv >= 60 and cpu_batch_warning(goal2, 10**6, "cpu") is None
    assert cpu_batch_warning(envs.make("SafetyPointGoal2"), 3, "cpu") is not None
    # Below nv = 60 "auto" is dense: CG alone still factorises the mass matrix.
    assert cpu_batch_warning(envs.make("SafetyPointGoal1", solver="cg"), 10**3, "cpu")
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
