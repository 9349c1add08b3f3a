"""Checkpoints: any state round-trips exactly, including the zero-size arrays MJX states carry
(orbax refuses to store those), and small files are written atomically."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from shapo_jax.io import atomic_write_json
from shapo_jax.training.checkpoint import Checkpointer


@pytest.mark.parametrize("seed", [0, 1])
def test_state_with_zero_size_leaves_round_trips(tmp_path, seed):
    rng = np.random.default_rng(seed)
    state = {
        "params": {"w": jnp.asarray(rng.normal(size=(3, 5)), jnp.float32),
                   "b": jnp.asarray(rng.normal(size=(5,)), jnp.float32)},
        "pipeline": {"act": jnp.zeros((8, 0), jnp.float32), "qpos": jnp.asarray(
            rng.normal(size=(8, 3)), jnp.float32), "contact": jnp.zeros((0,), jnp.int32)},
        "step": jnp.asarray(rng.integers(0, 100), jnp.int32),
        "key": jax.random.PRNGKey(int(rng.integers(0, 1000))),
    }
    checkpointer = Checkpointer(tmp_path / "checkpoints")
    checkpointer.save(7, state)
    checkpointer.close()

    target = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state
    )
    step, restored = Checkpointer(tmp_path / "checkpoints").restore(target)
    assert step == 7
    assert jax.tree_util.tree_structure(restored) == jax.tree_util.tree_structure(state)
    for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(restored),
                    strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_atomic_write_json_leaves_no_temporary_files(tmp_path):
    data = {"a": 1, "b": [1.5, "x"]}
    atomic_write_json(tmp_path / "out" / "config.json", data)
    atomic_write_json(tmp_path / "out" / "config.json", {**data, "a": 2})
    assert json.loads((tmp_path / "out" / "config.json").read_text()) == {**data, "a": 2}
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["config.json"]
