"""The policy and critics: diagonal Gaussian distribution and MLP networks."""

from shapo_jax.policy.gaussian import gaussian_entropy, gaussian_kl, gaussian_log_prob
from shapo_jax.policy.networks import MLP, Critic, GaussianActor

__all__ = [
    "MLP",
    "Critic",
    "GaussianActor",
    "gaussian_entropy",
    "gaussian_kl",
    "gaussian_log_prob",
]
