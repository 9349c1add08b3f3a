"""Safety-Gymnasium's pseudo-lidar: a pure function of the robot's pose and object centres.

Bins split the full circle around the robot's z axis, bin 0 starting at the body's +x axis and
going counter-clockwise. An object (a point at its centre) at planar distance d in bin b reads
max(0, max_dist - d) / max_dist; each bin keeps the largest reading. With aliasing, the
object's fractional position f inside its bin also lights the next bin with f * reading and
the previous one with (1 - f) * reading (again keeping the maximum).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

NUM_BINS = 16
MAX_DIST = 3.0


def egocentric_xy(robot_pos: jax.Array, robot_mat: jax.Array, points: jax.Array) -> jax.Array:
    """Points (N, 2) on the floor (z = 0) in the robot's frame, x and y only (N, 2).

    As in the original, the vector from the robot's 3-D position to the point at height 0 is
    rotated into the body frame (`world_vec @ mat`), so a tilted robot sees the tilt.
    """
    world = jnp.concatenate([points[:, :2], jnp.zeros_like(points[:, :1])], axis=-1) - robot_pos
    return (world @ robot_mat)[:, :2]


def pseudo_lidar(
    ego_xy: jax.Array,
    mask: jax.Array | None = None,
    num_bins: int = NUM_BINS,
    max_dist: float = MAX_DIST,
    alias: bool = True,
) -> jax.Array:
    """Lidar readings (num_bins,) of objects at egocentric positions `ego_xy` (N, 2).

    `mask` (N,) switches objects off (a masked object reads 0 everywhere). Zero objects give
    zeros.
    """
    ego_xy = jnp.asarray(ego_xy)
    if ego_xy.ndim != 2 or ego_xy.shape[-1] != 2:
        raise ValueError(f"pseudo_lidar: ego_xy must have shape (N, 2), got {ego_xy.shape}")
    if ego_xy.shape[0] == 0:
        return jnp.zeros((num_bins,), ego_xy.dtype)
    dist = jnp.hypot(ego_xy[:, 0], ego_xy[:, 1])
    angle = jnp.mod(jnp.arctan2(ego_xy[:, 1], ego_xy[:, 0]), 2 * jnp.pi)
    bin_size = 2 * jnp.pi / num_bins
    position = angle / bin_size
    bins = jnp.clip(jnp.floor(position).astype(jnp.int32), 0, num_bins - 1)
    frac = jnp.clip(position - bins, 0.0, 1.0)
    reading = jnp.maximum(0.0, max_dist - dist) / max_dist
    if mask is not None:
        reading = jnp.where(mask, reading, 0.0)
    index = jnp.arange(num_bins)
    hit = jnp.where(index[None, :] == bins[:, None], reading[:, None], 0.0)
    if alias:
        nxt = (bins + 1) % num_bins
        prv = (bins - 1) % num_bins
        hit = jnp.maximum(hit, jnp.where(index[None, :] == nxt[:, None],
                                         (frac * reading)[:, None], 0.0))
        hit = jnp.maximum(hit, jnp.where(index[None, :] == prv[:, None],
                                         ((1.0 - frac) * reading)[:, None], 0.0))
    return jnp.max(hit, axis=0)
