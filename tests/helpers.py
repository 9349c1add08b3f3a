"""Shared test utilities."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import jax
import jax.monitoring
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

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


# ----- independent references shared by the learners' tests -------------------------------

def assert_learns_with_cost_held_near_limit(trainer, env, updates: int, seeds: int = 4) -> None:
    """Trains `seeds` fresh runs of `trainer` side by side (vmapped) for `updates` updates on
    TinyHazardNav and checks what a Lagrangian method promises there, averaged over the seeds
    and over the last half of the updates (a single run's last cost oscillates around the
    limit as the multiplier rises and decays):

    - the training cost stays within twice the limit, where the multiplier holds it near the
      limit; the unconstrained policy's is about 9.4, its straight path crossing the hazard
      (measured with cost_limit=1000: 9.4 over the last 30 of 60 PPO-Lag updates, 8 seeds);
    - the return is at least 1.0 above the random policy's (about 0; unconstrained 5.1);
    - on every seed the cost went above the limit at some update and the multiplier answered.
    The training cost is the one the multiplier controls (the constraint is on the stochastic
    policy); the deterministic evaluation's cost is not bounded by it.
    """
    random_key, *keys = jax.random.split(jax.random.PRNGKey(fresh_seed()), seeds + 1)
    keys = jnp.stack(keys)
    states = jax.jit(jax.vmap(trainer.init))(keys)
    _, metrics = jax.jit(jax.vmap(lambda state: trainer.run(state, updates)))(states)
    cost, ret, multiplier = (np.asarray(metrics[name]) for name in
                             ("episode_cost", "episode_return", "lagrange_multiplier"))
    limit = trainer.config.cost_limit
    late = slice(updates // 2, None)
    late_cost, late_return = cost[:, late].mean(), ret[:, late].mean()
    report = dict(late_cost_per_seed=cost[:, late].mean(1),
                  late_return_per_seed=ret[:, late].mean(1), max_multiplier=multiplier.max(1))
    random_return = random_policy_return(env, random_key)
    assert late_cost < 2.0 * limit, (late_cost, report)
    assert late_return > random_return + 1.0, (late_return, random_return, report)
    assert np.all(cost.max(1) > limit), report
    assert np.all(multiplier.max(1) > 0.1), report


def fresh_seed() -> int:
    """A new seed on every call, for tests that draw fresh random inputs. It is printed, so
    that pytest shows it with a failure; `SHAPO_TEST_SEED=N pytest ...` replays that draw
    (every call then returns N)."""
    replay = os.environ.get("SHAPO_TEST_SEED")
    seed = int(replay) if replay else int(np.random.default_rng().integers(2**31))
    print(f"fresh seed {seed}")
    return seed


def fresh_rng() -> np.random.Generator:
    """A NumPy generator seeded by `fresh_seed` (printed; replayed with SHAPO_TEST_SEED)."""
    return np.random.default_rng(fresh_seed())


def flat(tree) -> np.ndarray:
    """A pytree's leaves as one float64 vector, in `jax.tree_util` order."""
    return np.concatenate([np.ravel(np.asarray(x, np.float64))
                           for x in jax.tree_util.tree_leaves(tree)])


def numpy_gaussian_kl(mean_p, log_std_p, mean_q, log_std_q) -> np.ndarray:
    """KL(N_p || N_q) per state for diagonal Gaussians, in float64 (the textbook formula)."""
    mean_p, log_std_p, mean_q, log_std_q = (
        np.asarray(x, np.float64) for x in (mean_p, log_std_p, mean_q, log_std_q)
    )
    var_p, var_q = np.exp(2 * log_std_p), np.exp(2 * log_std_q)
    return np.sum(
        0.5 * np.log(var_q / var_p) + (var_p + (mean_p - mean_q) ** 2) / (2 * var_q) - 0.5,
        axis=-1,
    )


def numpy_subsample(obs: np.ndarray, fraction: float) -> np.ndarray:
    """The Fisher's states: m = round(fraction n) rows at floor(i n / m) (docs/algorithms.md §5)."""
    n = obs.shape[0]
    m = max(1, min(n, int(np.floor(fraction * n + 0.5))))
    return obs[[int(np.floor(i * n / m)) for i in range(m)]]


def dense_gaussian_fisher(actor, params, obs) -> np.ndarray:
    """F = 1/B sum_s J_s^T diag(1/sigma^2, 2) J_s as an explicit float64 matrix over the
    flattened parameters (`ravel_pytree` order), J_s the Jacobian of (mean, log_std) at s."""
    flat_params, unravel = ravel_pytree(params)
    jac_mean, jac_log_std = jax.jit(jax.jacfwd(lambda f: actor.apply(unravel(f), obs)))(
        flat_params)
    _, log_std = actor.apply(params, obs)
    jac_mean, jac_log_std = np.asarray(jac_mean, np.float64), np.asarray(jac_log_std, np.float64)
    inv_var = np.exp(-2.0 * np.asarray(log_std, np.float64))
    fisher = np.einsum("bap,ba,baq->pq", jac_mean, inv_var, jac_mean)
    fisher += 2.0 * np.einsum("bap,baq->pq", jac_log_std, jac_log_std)
    return fisher / obs.shape[0]


def dense_natural_direction(fisher: np.ndarray, damping: float, grad: np.ndarray,
                            delta: float) -> tuple[np.ndarray, float]:
    """sqrt(2 delta / g^T x) x with x = (F + damping I)^-1 g, and g^T x."""
    x = np.linalg.solve(fisher + damping * np.eye(len(grad)), grad)
    g_dot_x = float(grad @ x)
    return np.sqrt(2 * delta / g_dot_x) * x, g_dot_x


def hand_adam(params, state, grad: dict) -> dict:
    """One step of `make_optimizer`'s Adam (optax's defaults: b1 0.9, b2 0.999, eps 1e-8)
    from `state`, written out in float64; `grad[k]`: the (clipped) gradient of the top-level
    entry `params[k]` as a `flat` vector. Returns the new `flat(params[k])` per entry."""
    inner = state[1]
    adam_state = inner.inner_state[0]
    count = int(adam_state.count) + 1
    lr = float(inner.hyperparams["learning_rate"])
    new = {}
    for k in grad:
        m = 0.9 * flat(adam_state.mu[k]) + 0.1 * grad[k]
        v = 0.999 * flat(adam_state.nu[k]) + 0.001 * grad[k] ** 2
        m_hat, v_hat = m / (1 - 0.9 ** count), v / (1 - 0.999 ** count)
        new[k] = flat(params[k]) - lr * m_hat / (np.sqrt(v_hat) + 1e-8)
    return new
