"""The networks' two layer initialisations (shapo_jax/policy/networks.py), against their
definitions: PyTorch's nn.Linear default (U(+-1/sqrt(fan_in)) for weights and biases, tested
with a Kolmogorov-Smirnov test against that uniform law) and the orthogonal scheme (columns
orthonormal times the gain, zero biases)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import fresh_rng
from scipy import stats

from shapo_jax.policy.networks import Critic, GaussianActor
from shapo_jax.training.config import TrainConfig
from shapo_jax.training.train import make_networks


def _layers(params: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    mlp = params["params"]["MLP_0"]
    return [(np.asarray(mlp[f"Dense_{i}"]["kernel"]), np.asarray(mlp[f"Dense_{i}"]["bias"]))
            for i in range(len(mlp))]


def _random_shapes(rng: np.random.Generator) -> tuple[int, tuple[int, int], int]:
    return (int(rng.integers(20, 80)), (int(rng.integers(100, 200)), int(rng.integers(100, 200))),
            int(rng.integers(1, 4)))


def test_pytorch_init_is_uniform_in_one_over_root_fan_in():
    rng = fresh_rng()
    obs_size, hidden, action_size = _random_shapes(rng)
    key = jax.random.PRNGKey(int(rng.integers(1 << 30)))
    actor = GaussianActor(action_size, hidden, "tanh", 0.0, "pytorch")
    critic = Critic(hidden, "tanh", "pytorch")
    for net in (actor, critic):
        layers = _layers(net.init(key, jnp.zeros((1, obs_size))))
        fan_ins = [obs_size, *hidden]
        assert [k.shape[0] for k, _ in layers] == fan_ins
        for (kernel, bias), fan_in in zip(layers, fan_ins, strict=True):
            bound = 1.0 / np.sqrt(fan_in)
            for values in (kernel.ravel(), bias):
                assert np.abs(values).max() <= bound
                if values.size >= 64:  # the output biases are too few for a useful test
                    law = stats.uniform(loc=-bound, scale=2 * bound)
                    assert stats.kstest(values, law.cdf).pvalue > 1e-4
    # the log-std keeps its own constant
    params = actor.init(key, jnp.zeros((1, obs_size)))
    np.testing.assert_array_equal(params["params"]["log_std"], np.zeros(action_size))


def test_orthogonal_init_has_orthonormal_columns_times_the_gain_and_zero_biases():
    rng = fresh_rng()
    obs_size, hidden, action_size = _random_shapes(rng)
    key = jax.random.PRNGKey(int(rng.integers(1 << 30)))
    layers = _layers(GaussianActor(action_size, hidden).init(key, jnp.zeros((1, obs_size))))
    gains = [np.sqrt(2.0)] * len(hidden) + [0.01]
    for (kernel, bias), gain in zip(layers, gains, strict=True):
        small = min(kernel.shape)
        gram = kernel.T @ kernel if kernel.shape[0] >= kernel.shape[1] else kernel @ kernel.T
        np.testing.assert_allclose(gram, gain**2 * np.eye(small), atol=1e-5 * max(gain**2, 1))
        np.testing.assert_array_equal(bias, 0.0)


def test_config_layer_init_reaches_the_networks_and_is_checked():
    config = TrainConfig(env="TinyHazardNav", layer_init="pytorch")
    networks = make_networks(config, action_size=2)
    assert networks.actor.layer_init == networks.critic.layer_init == "pytorch"
    # left out of the config dict at its default, so that older run ids stay the same
    default = TrainConfig(env="TinyHazardNav")
    assert "layer_init" not in default.to_dict()
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"layer_init='xavier'.*orthogonal.*pytorch"):
        dataclasses.replace(default, layer_init="xavier")
