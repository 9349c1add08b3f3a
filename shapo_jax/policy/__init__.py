"""The policy and critics: diagonal Gaussian distribution and MLP networks; an exported policy
(`exported`: NumPy only, loadable without JAX)."""

from shapo_jax.policy.exported import ExportedPolicy, load_policy
from shapo_jax.policy.gaussian import gaussian_entropy, gaussian_kl, gaussian_log_prob
from shapo_jax.policy.networks import MLP, Critic, GaussianActor

__all__ = [
    "MLP",
    "Critic",
    "ExportedPolicy",
    "GaussianActor",
    "gaussian_entropy",
    "gaussian_kl",
    "gaussian_log_prob",
    "load_policy",
]
