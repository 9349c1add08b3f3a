"""Stepping an env batch in sequential pieces (`vmap_in_pieces`): the same numbers as one
vmapped call, LAPACK calls within the task's inline limit, shardings kept, and the CLI's
no-flag run of 2 seeds x 1024 SafetyPointGoal1 envs, which used to hang, finishing."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import fresh_rng, fresh_seed

import envs
from shapo_jax.rollout import init_tracker, reset_batch, rollout, vmap_in_pieces
from shapo_jax.training.devices import env_pieces, lapack_batch_limit

ROOT = Path(__file__).resolve().parents[1]


def _nonlinear(x, tree):
    """Per-element work with reductions inside each element, pytrees in and out."""
    y = jnp.tanh(x @ tree["w"]) * jnp.sin(tree["b"]).sum()
    return {"y": y, "n": (jnp.cumsum(y) ** 2).max(), "pair": (y[::-1], tree["b"] * 2.0)}


def test_pieces_give_the_numbers_of_one_vmapped_call_bit_for_bit() -> None:
    rng = fresh_rng()
    batch = int(rng.choice([12, 24, 36]))
    x = jnp.asarray(rng.normal(size=(batch, 5)), jnp.float32)
    tree = {"w": jnp.asarray(rng.normal(size=(batch, 5, 7)), jnp.float32),
            "b": jnp.asarray(rng.normal(size=(batch, 3)), jnp.float32)}
    reference = jax.jit(jax.vmap(_nonlinear))(x, tree)
    for pieces in [p for p in range(1, batch + 1) if batch % p == 0]:
        got = jax.jit(vmap_in_pieces(_nonlinear, pieces))(x, tree)
        jax.tree_util.tree_map(np.testing.assert_array_equal, got, reference)
    # Under an outer vmap (members), each member's batch is cut the same way.
    members = jax.tree_util.tree_map(lambda a: jnp.stack([a, -a]), (x, tree))
    outer = jax.jit(jax.vmap(vmap_in_pieces(_nonlinear, 3)))(*members)
    jax.tree_util.tree_map(np.testing.assert_array_equal, outer,
                           jax.vmap(jax.vmap(_nonlinear))(*members))


@pytest.mark.parametrize("pieces", [0, -1, 2.0, True])
def test_bad_piece_counts_are_refused_by_name(pieces) -> None:
    with pytest.raises(ValueError, match=f"positive integer, got {pieces!r}"):
        vmap_in_pieces(jnp.sin, pieces)


def test_a_batch_that_does_not_split_evenly_is_refused() -> None:
    with pytest.raises(ValueError, match="batch of 10 cannot be stepped in 4 equal pieces"):
        vmap_in_pieces(jnp.sin, 4)(jnp.zeros((10, 2)))


def test_rollout_in_pieces_follows_the_same_trajectories() -> None:
    env = envs.make("TinyHazardNav")
    num_envs, key = 16, jax.random.PRNGKey(fresh_seed())

    def random_policy(obs, k):
        return jax.random.uniform(k, (obs.shape[0], env.action_size), minval=-1, maxval=1), \
            jnp.zeros(obs.shape[0])

    def collect(pieces):
        state = reset_batch(env, key, num_envs, pieces)
        return rollout(env, random_policy, state, init_tracker(num_envs), key, 40,
                       env_pieces=pieces)

    # The per-env computation is the same; XLA may vectorise the smaller batches differently
    # and round a few values by one float32 ulp (here about 2e-7 on values near 0.1).
    reference = jax.jit(lambda: collect(1))()
    for pieces in (2, 8):
        got = jax.jit(lambda p=pieces: collect(p))()
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, atol=2e-6),
                               got, reference)
        np.testing.assert_array_equal(got[2].done, reference[2].done)


def _lapack_batches(text: str) -> list[int]:
    """The batch (matrices per call) of every LAPACK custom call in lowered StableHLO."""
    batches = []
    for line in text.splitlines():
        if "lapack_" in line and "custom_call" in line:
            dims = re.search(r"\(tensor<([0-9x]+)xf32>", line).group(1).split("x")
            batches.append(int(np.prod([int(d) for d in dims[:-2]])))
    return batches


def test_pieces_keep_every_lapack_call_of_the_newton_step_within_the_limit() -> None:
    """2 members x 1024 SafetyPointGoal1 envs on one device: one vmapped step would factorise
    2048 matrices per call (the hanging case); in `env_pieces` pieces no call exceeds the
    limit under which jaxlib runs the batch inline."""
    env = envs.make("SafetyPointGoal1")
    limit, members, num_envs = lapack_batch_limit(env, "cpu"), 2, 1024
    pieces = env_pieces(num_envs, 1, members, limit)
    state = jax.eval_shape(lambda k: jax.vmap(lambda kk: reset_batch(env, kk, num_envs))(k),
                           jax.random.split(jax.random.PRNGKey(0), members))
    action = jnp.zeros((members, num_envs, env.action_size))

    def batches(p):
        text = jax.jit(jax.vmap(vmap_in_pieces(env.step, p))).lower(state, action).as_text()
        return _lapack_batches(text)

    whole, cut = batches(1), batches(pieces)
    assert whole and max(whole) == members * num_envs > limit
    assert cut and max(cut) == members * num_envs // pieces <= limit


SHARDED_SCRIPT = textwrap.dedent(
    """
    import json
    import jax, jax.numpy as jnp
    from jax.sharding import NamedSharding, PartitionSpec
    from shapo_jax.rollout import vmap_in_pieces
    from shapo_jax.training.devices import ENV_AXIS, make_mesh

    split = NamedSharding(make_mesh(), PartitionSpec(ENV_AXIS))
    x = jax.device_put(jnp.arange(64 * 3, dtype=jnp.float32).reshape(64, 3), split)
    f = lambda v: jnp.tanh(v) * v.sum()
    compiled = jax.jit(vmap_in_pieces(f, 4), in_shardings=split).lower(x).compile()
    text = compiled.as_text()
    out = compiled(x)
    print("RESULT" + json.dumps({
        "devices": len(jax.devices()),
        "collectives": [c for c in ("all-gather", "all-to-all", "collective-permute",
                                    "all-reduce") if c in text],
        "same_sharding": out.sharding.is_equivalent_to(split, 2),
        "equal": bool(jnp.array_equal(out, jax.vmap(f)(x))),
    }))
    """
)


def test_pieces_of_a_sharded_batch_stay_on_their_devices() -> None:
    environ = dict(os.environ, JAX_PLATFORMS="cpu",
                   XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} "
                             "--xla_force_host_platform_device_count=4")
    proc = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads([ln for ln in proc.stdout.splitlines()
                         if ln.startswith("RESULT")][-1][len("RESULT"):])
    assert result == {"devices": 4, "collectives": [], "same_sharding": True, "equal": True}


def test_two_seeds_of_1024_navigation_envs_train_without_a_device_flag(tmp_path) -> None:
    """The command that hung at 0% CPU (2 seeds x 1024 SafetyPointGoal1 envs, no
    --cpu-devices) finishes; a hang would end in the subprocess timeout or the watchdog."""
    environ = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    command = [sys.executable, "-m", "shapo_jax.training.cli", "--env", "SafetyPointGoal1",
               "--algo", "shapo_ppo_lag", "--num-envs", "1024", "--seeds", "2",
               "--total-steps", "4096", "--set", "rollout_length=4", "--set", "eval_envs=8",
               "--stall-timeout", "400", "--no-plot", "--out", str(tmp_path / "run")]
    proc = subprocess.run(command, cwd=ROOT, env=environ, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "sequential piece(s)" in proc.stdout
    summary = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert summary["env_steps"] == 4096 and summary["seeds"] == 2  # one update
    assert np.isfinite(summary["eval_return"]) and summary["diverged_seeds"] == []
