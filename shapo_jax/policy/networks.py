"""Actor and critic networks (flax.linen): [64, 64] tanh MLPs by default, as in OmniSafe.

Two layer initialisations (`LAYER_INITS`, config `layer_init`):
- "orthogonal" (the default): hidden weights orthogonal with gain sqrt 2, the output layer
  with gain `output_scale` (0.01 for the actor's mean, 1 for the critics), zero biases.
- "pytorch": PyTorch's `nn.Linear` default, which OmniSafe 0.5 keeps (its "kaiming_uniform"
  with a = sqrt 5): weights and biases uniform in +-1/sqrt(fan_in), every layer alike.
A damped natural-gradient step (TRPO, SHAPO's perturbation) depends on the parameterisation
where Adam's per-parameter steps hardly do: under "pytorch" the actor's mean layer starts
about 60x larger. RESULTS.md ("Why TRPO-Lag falls short") measures what it changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu, "elu": nn.elu, "silu": nn.silu}
LAYER_INITS = ("orthogonal", "pytorch")


def _activation(name: str):
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def _uniform_fan_in(fan_in: int) -> nn.initializers.Initializer:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's nn.Linear bias (and, in effect, weight)."""
    bound = 1.0 / float(fan_in) ** 0.5

    def init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _dense(width: int, fan_in: int, layer_init: str, gain: float) -> nn.Dense:
    """One linear layer under `layer_init` (`gain` is the orthogonal scheme's)."""
    if layer_init == "orthogonal":
        return nn.Dense(width, kernel_init=nn.initializers.orthogonal(gain))
    if layer_init == "pytorch":
        return nn.Dense(width, kernel_init=_uniform_fan_in(fan_in),
                        bias_init=_uniform_fan_in(fan_in))
    raise ValueError(f"unknown layer_init {layer_init!r}; valid: {list(LAYER_INITS)}")


class MLP(nn.Module):
    """Fully connected network, a final linear layer; initialised by `layer_init`."""

    hidden_sizes: Sequence[int]
    output_size: int
    activation: str = "tanh"
    output_scale: float = 1.0
    layer_init: str = "orthogonal"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = _activation(self.activation)
        for width in self.hidden_sizes:
            x = act(_dense(width, x.shape[-1], self.layer_init, jnp.sqrt(2.0))(x))
        return _dense(self.output_size, x.shape[-1], self.layer_init, self.output_scale)(x)


class GaussianActor(nn.Module):
    """pi_theta(a|s) = N(mean(s), diag(exp(log_std))^2), a state-independent log-std."""

    action_size: int
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    init_log_std: float = -0.5
    layer_init: str = "orthogonal"

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean = MLP(self.hidden_sizes, self.action_size, self.activation, output_scale=0.01,
                   layer_init=self.layer_init)(obs)
        log_std = self.param(
            "log_std", nn.initializers.constant(self.init_log_std), (self.action_size,)
        )
        return mean, jnp.broadcast_to(log_std, mean.shape)


class Critic(nn.Module):
    """State-value network V(s) (used for both the reward and the cost critic)."""

    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    layer_init: str = "orthogonal"

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return MLP(self.hidden_sizes, 1, self.activation, layer_init=self.layer_init)(obs)[..., 0]
