"""What the policy update works on: the learner's parameters and optimiser states, and the
flattened batch of one rollout."""

from __future__ import annotations

from collections.abc import Callable, Mapping
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


def clip_each_by_global_norm(max_norm: float) -> optax.GradientTransformation:
    """`optax.clip_by_global_norm` applied to each entry of a dict of updates on its own.

    For the critics' {"reward": ..., "cost": ...}: each critic's gradient is clipped by its own
    global norm (docs/algorithms.md §8, `CriticSettings.separate`). Its state is optax's
    `EmptyState`, as the joint clip's, so the two optimisers' states are interchangeable.
    """
    joint = optax.clip_by_global_norm(max_norm)

    def update_fn(updates, state, params=None):
        del params
        if not isinstance(updates, Mapping):
            raise TypeError("clip_each_by_global_norm: expected a dict of updates (one entry "
                            f"per critic), got {type(updates).__name__}")
        return {name: joint.update(sub, state)[0] for name, sub in updates.items()}, state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


def make_optimizer(
    max_grad_norm: float, *, per_critic: bool = False
) -> optax.GradientTransformation:
    """Gradient clipping then Adam whose learning rate lives in the state (so it can be vmapped).

    The clip is over the whole parameter tree, or with `per_critic` over each top-level entry
    on its own (`clip_each_by_global_norm`); the state's structure is the same either way.
    """
    clip = clip_each_by_global_norm if per_critic else optax.clip_by_global_norm
    return optax.chain(
        clip(max_grad_norm),
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
