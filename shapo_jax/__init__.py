"""shapo-jax: Sharpness-Aware Policy Optimization (SHAPO) for safe reinforcement learning.

The public API of the SHAPO core is importable from here; the stages of training live in
sub-packages that follow the data flow: `envs` (separate package) -> `shapo_jax.rollout` ->
`shapo_jax.advantages` -> `shapo_jax.update` -> `shapo_jax.metrics`, tied together by
`shapo_jax.training`.
"""

from shapo_jax.sharpness import (
    ConjugateGradientInfo,
    NaturalStepInfo,
    ReweightingSummary,
    conjugate_gradient,
    constant_schedule,
    fisher_vector_product,
    gaussian_fisher_vector_product,
    natural_step,
    perturbation_weights,
    pessimism_delta,
    quantile_schedule,
    shapo_perturbation,
    sharpness_aware_gradient,
    sharpness_aware_value_and_grad,
    summarize_reweighting,
)

__version__ = "0.1.0"

__all__ = [
    "ConjugateGradientInfo",
    "NaturalStepInfo",
    "ReweightingSummary",
    "conjugate_gradient",
    "constant_schedule",
    "fisher_vector_product",
    "gaussian_fisher_vector_product",
    "natural_step",
    "perturbation_weights",
    "pessimism_delta",
    "quantile_schedule",
    "shapo_perturbation",
    "sharpness_aware_gradient",
    "sharpness_aware_value_and_grad",
    "summarize_reweighting",
]
