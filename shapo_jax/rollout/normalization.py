"""Running observation normalisation (mean and variance over every observation seen).

Statistics are merged batch by batch with Chan et al.'s parallel update, so the result does
not depend on how the data were split (across minibatches, updates or devices).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class RunningStatistics:
    mean: jax.Array
    sum_squared_deviations: jax.Array
    count: jax.Array

    @property
    def variance(self) -> jax.Array:
        return self.sum_squared_deviations / jnp.maximum(self.count, 1.0)


def init_statistics(size: int) -> RunningStatistics:
    """Empty statistics for vectors of `size` floats (normalising is the identity until data)."""
    return RunningStatistics(
        mean=jnp.zeros((size,), jnp.float32),
        sum_squared_deviations=jnp.zeros((size,), jnp.float32),
        count=jnp.zeros((), jnp.float32),
    )


def update_statistics(stats: RunningStatistics, batch: jax.Array) -> RunningStatistics:
    """Merge a batch [..., size] into the statistics."""
    batch = batch.reshape(-1, stats.mean.shape[-1]).astype(jnp.float32)
    batch_count = jnp.asarray(batch.shape[0], jnp.float32)
    batch_mean = batch.mean(axis=0)
    batch_ssd = ((batch - batch_mean) ** 2).sum(axis=0)
    total = stats.count + batch_count
    delta = batch_mean - stats.mean
    mean = stats.mean + delta * batch_count / total
    ssd = stats.sum_squared_deviations + batch_ssd + delta**2 * stats.count * batch_count / total
    return RunningStatistics(mean=mean, sum_squared_deviations=ssd, count=total)


OBS_CLIP = 10.0  # normalised observations are clipped to +-OBS_CLIP


def normalize(stats: RunningStatistics, x: jax.Array, clip: float = OBS_CLIP) -> jax.Array:
    """(x - mean) / std, clipped to +-clip; the identity before any data were seen."""
    std = jnp.sqrt(stats.variance + 1e-8)
    seen = stats.count > 0
    normalized = jnp.clip((x - stats.mean) / std, -clip, clip)
    return jnp.where(seen, normalized, x)
