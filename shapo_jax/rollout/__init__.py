"""Stage 1 of the data flow: stepping environments and collecting transitions."""

import envs.quiet_mjx  # noqa: F401  (first: MuJoCo MJX without Warp's notice)
from shapo_jax.rollout.episodes import (
    EpisodeSummary,
    EpisodeTracker,
    EpisodeWindow,
    init_tracker,
    init_window,
    push_window,
    recent_episodes,
    start_rollout,
    summarize_episodes,
    summarize_rollout,
    track_step,
)
from shapo_jax.rollout.full_episodes import episode_horizon, full_episodes
from shapo_jax.rollout.normalization import (
    RunningStatistics,
    init_statistics,
    normalize,
    update_statistics,
)
from shapo_jax.rollout.pieces import vmap_in_pieces
from shapo_jax.rollout.rollout import (
    Transition,
    desynchronize_episodes,
    reset_batch,
    rollout,
    step_with_repeat,
)

__all__ = [
    "EpisodeSummary",
    "EpisodeTracker",
    "EpisodeWindow",
    "RunningStatistics",
    "Transition",
    "init_statistics",
    "desynchronize_episodes",
    "episode_horizon",
    "full_episodes",
    "init_tracker",
    "init_window",
    "normalize",
    "push_window",
    "recent_episodes",
    "reset_batch",
    "rollout",
    "start_rollout",
    "step_with_repeat",
    "summarize_episodes",
    "summarize_rollout",
    "track_step",
    "update_statistics",
    "vmap_in_pieces",
]
