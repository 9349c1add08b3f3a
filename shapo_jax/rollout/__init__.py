"""Stage 1 of the data flow: stepping environments and collecting transitions."""

from shapo_jax.rollout.episodes import (
    EpisodeSummary,
    EpisodeTracker,
    init_tracker,
    summarize_episodes,
    track_step,
)
from shapo_jax.rollout.normalization import (
    RunningStatistics,
    init_statistics,
    normalize,
    update_statistics,
)
from shapo_jax.rollout.rollout import Transition, reset_batch, rollout, step_with_repeat

__all__ = [
    "EpisodeSummary",
    "EpisodeTracker",
    "RunningStatistics",
    "Transition",
    "init_statistics",
    "init_tracker",
    "normalize",
    "reset_batch",
    "rollout",
    "step_with_repeat",
    "summarize_episodes",
    "track_step",
    "update_statistics",
]
