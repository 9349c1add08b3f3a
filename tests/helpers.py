"""Shared test utilities."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax
import jax.monitoring
import jax.numpy as jnp
import pytest

from shapo_jax.rollout import reset_batch


def random_policy_return(env, key, num_envs=256):
    """Mean episode return of uniform random actions in [-1, 1]^2 (one 50-step episode)."""
    reset_key, action_key = jax.random.split(key)
    state = reset_batch(env, reset_key, num_envs)

    def one_step(carry, step_key):
        state, total = carry
        action = jax.random.uniform(step_key, (num_envs, env.action_size), minval=-1, maxval=1)
        state = jax.vmap(env.step)(state, action)
        return (state, total + state.reward), None

    (_, total), _ = jax.lax.scan(
        one_step, (state, jnp.zeros(num_envs)), jax.random.split(action_key, env.episode_length)
    )
    return float(total.mean())


class SimulatedCrashError(Exception):
    """Raised by `crash_after_update` where a killed process would have stopped."""


def crash_after_update(monkeypatch, update: int) -> None:
    """Make every `Runner` stop with SimulatedCrashError right after logging `update` (its
    checkpointer closed, its later checkpoints never written), as a killed process would."""
    from shapo_jax.training.runner import Runner

    progress = Runner._progress

    def crash(self, done, *args):
        progress(self, done, *args)
        if done == update:
            self.checkpointer.close()
            raise SimulatedCrashError

    monkeypatch.setattr(Runner, "_progress", crash)


@contextlib.contextmanager
def refusing_compilation() -> Iterator[None]:
    """Fail if any program is lowered or compiled inside the block."""
    compilations: list[str] = []

    def record(event: str, duration: float, **kwargs) -> None:
        if "backend_compile" in event or "to_mlir" in event:
            compilations.append(event)

    jax.monitoring.register_event_duration_secs_listener(record)
    try:
        yield
    finally:
        jax.monitoring.unregister_event_duration_listener(record)
    assert not compilations, f"compiled before rejecting the input: {compilations}"


def cli_error(main, argv: list[str], capsys, usage_ok: bool = False) -> str:
    """stderr of a CLI `main(argv)` that must exit with status 2 and one clear line, no
    traceback (or argparse's usage line then its message, with `usage_ok`)."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 or (usage_ok and lines[0].startswith("usage:")), err
    return err
