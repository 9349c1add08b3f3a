"""What the policy update works on: the learner's parameters and optimiser states, and the
flattened batch of one rollout."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from chex import ArrayTree
from flax import struct

from shapo_jax.policy import Critic, GaussianActor


@struct.dataclass
class Networks:
    """The (static) network definitions; parameters live in `LearnerState`."""

    actor: GaussianActor = struct.field(pytree_node=False)
    critic: Critic = struct.field(pytree_node=False)


@struct.dataclass
class LearnerState:
    actor_params: ArrayTree
    critic_params: ArrayTree  # {"reward": ..., "cost": ...}
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState


@struct.dataclass
class UpdateBatch:
    """One rollout flattened to [batch]; observations already normalised."""

    obs: jax.Array
    action: jax.Array
    old_log_prob: jax.Array
    advantage: jax.Array  # the Lagrangian advantage A_lag
    reward_target: jax.Array
    cost_target: jax.Array
    cost: jax.Array  # per-step cost, for the reweighting diagnostic


def make_optimizer(max_grad_norm: float) -> optax.GradientTransformation:
    """Gradient clipping then Adam whose learning rate lives in the state (so it can be vmapped)."""
    return optax.chain(
        optax.clip_by_global_norm(max_grad_norm),
        optax.inject_hyperparams(optax.adam)(learning_rate=1.0),
    )


def init_optimizer(
    optimizer: optax.GradientTransformation, params: ArrayTree, learning_rate: jax.Array
) -> optax.OptState:
    """Initialise `make_optimizer`'s state with the given (possibly traced) learning rate."""
    return optax.tree_utils.tree_set(
        optimizer.init(params), learning_rate=jnp.asarray(learning_rate, jnp.float32)
    )


def minibatches(batch: UpdateBatch, key: jax.Array, num_minibatches: int) -> UpdateBatch:
    """Shuffle a batch and split it into [num_minibatches, minibatch, ...]."""
    size = batch.obs.shape[0]
    permutation = jax.random.permutation(key, size)
    return jax.tree_util.tree_map(
        lambda x: x[permutation].reshape((num_minibatches, size // num_minibatches) + x.shape[1:]),
        batch,
    )


# The signature every policy update shares (`make_ppo_update`, `make_trpo_update`):
# update(learner, batch, key, hp: UpdateHyperparameters) -> (learner, scalar metrics).
PolicyUpdate = Callable[[LearnerState, UpdateBatch, jax.Array, Any],
                        tuple[LearnerState, dict[str, jax.Array]]]
