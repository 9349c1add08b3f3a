"""The SHAPO core: Fisher products, conjugate gradient, the perturbation and its schedules."""

from shapo_jax.sharpness.conjugate_gradient import ConjugateGradientInfo, conjugate_gradient
from shapo_jax.sharpness.fisher import fisher_vector_product, gaussian_fisher_vector_product
from shapo_jax.sharpness.perturbation import NaturalStepInfo, natural_step, shapo_perturbation
from shapo_jax.sharpness.reweighting import (
    ReweightingSummary,
    perturbation_weights,
    summarize_reweighting,
)
from shapo_jax.sharpness.sam import sharpness_aware_gradient, sharpness_aware_value_and_grad
from shapo_jax.sharpness.schedules import constant_schedule, pessimism_delta, quantile_schedule

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
