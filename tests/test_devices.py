"""Splitting the CPU into XLA devices through XLA_FLAGS (the CLIs' --cpu-devices)."""

from __future__ import annotations

import pytest

from shapo_jax.training.devices import HOST_DEVICE_FLAG, use_cpu_devices


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
