"""The critics' step: reward and cost value regression, sharpness-aware with radius
rho_critic (docs/algorithms.md §8); rho = 0 gives the plain gradient exactly."""

from __future__ import annotations

import jax
import optax
from chex import ArrayTree

from shapo_jax.sharpness.sam import isolated_value_and_grad, sharpness_aware_value_and_grad
from shapo_jax.update.learner import Networks, UpdateBatch
from shapo_jax.update.losses import value_loss


def critic_loss(
    critic_params: ArrayTree, networks: Networks, batch: UpdateBatch
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """Sum of the reward and cost critics' squared errors; aux: the two losses."""
    reward_loss = value_loss(networks.critic.apply(critic_params["reward"], batch.obs),
                             batch.reward_target)
    cost_loss = value_loss(networks.critic.apply(critic_params["cost"], batch.obs),
                           batch.cost_target)
    return reward_loss + cost_loss, (reward_loss, cost_loss)


def critic_step(
    critic_params: ArrayTree,
    opt_state: optax.OptState,
    optimizer: optax.GradientTransformation,
    networks: Networks,
    batch: UpdateBatch,
    rho: jax.Array,
    sharpness_aware: bool,
) -> tuple[ArrayTree, optax.OptState, dict[str, jax.Array]]:
    """One optimiser step on both critics; SAM with radius `rho` when `sharpness_aware`."""
    if sharpness_aware:
        # At rho = 0 the perturbed point is exactly critic_params: the plain gradient.
        (_, (reward_loss, cost_loss)), grad = sharpness_aware_value_and_grad(
            critic_loss, critic_params, rho, networks, batch, has_aux=True
        )
    else:
        (_, (reward_loss, cost_loss)), grad = isolated_value_and_grad(
            critic_loss, critic_params, networks, batch, has_aux=True
        )
    updates, opt_state = optimizer.update(grad, opt_state, critic_params)
    critic_params = optax.apply_updates(critic_params, updates)
    return critic_params, opt_state, {"value_loss": reward_loss, "cost_value_loss": cost_loss}
