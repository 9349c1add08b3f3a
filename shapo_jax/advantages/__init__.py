"""Stage 2 of the data flow: advantages of reward and cost."""

from shapo_jax.advantages.gae import generalized_advantages

__all__ = ["generalized_advantages"]
