"""Render rollouts to RGB frames and save them as GIF, MP4 or a PNG strip (for notebooks).

    frames = render_rollout(env, states)           # list or stacked pytree of env states
    save_video(frames, "rollout.gif", fps=20)      # or .mp4 (needs ffmpeg), or .png (a strip)

Two renderers:
* `render_mujoco`: Brax/MJX environments, drawn by MuJoCo's OpenGL renderer off-screen on the
  CPU. It needs an OpenGL platform: EGL (libEGL, e.g. Debian's `libegl1`, plus a Mesa or
  NVIDIA driver) or OSMesa (`libosmesa6` and `pip install pyopengl`). A machine with only pip
  packages has neither, and `render_mujoco` then raises `RendererUnavailableError`.
* `render_topdown`: any planar task from plain arrays (robot xy, goal xy, hazard centres and
  radii, ...), drawn with matplotlib; works everywhere. `render_rollout` uses it for
  TinyHazardNav and for the navigation tasks (whose goal and hazards are positions, not
  bodies a MuJoCo scene would show: docs/environments.md §8), and for Brax/MJX tasks when no
  OpenGL platform is available it raises `RendererUnavailableError` saying so.
"""

from __future__ import annotations

import importlib
import os
import shutil
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

Frames = np.ndarray  # (T, H, W, 3) uint8

HAZARD_RGB = (0.30, 0.35, 0.95)
GOAL_RGB = (0.20, 0.75, 0.30)
ROBOT_RGB = (0.85, 0.15, 0.15)
BACKGROUND_RGB = (1.0, 1.0, 1.0)


class RendererUnavailableError(RuntimeError):
    """The requested renderer cannot run on this machine (the message says why and what to do)."""


# --------------------------------------------------------------------------------------------
# Rollouts: a list of states or one stacked pytree.


def unstack_states(states: Any) -> list[Any]:
    """A list of per-step states from a list/tuple, or from a pytree stacked on axis 0."""
    if isinstance(states, list | tuple):
        if not states:
            raise ValueError("empty rollout: no states to render")
        return list(states)
    leaves = jax.tree.leaves(states)
    if not leaves:
        raise ValueError("empty rollout: the states pytree has no arrays")
    length = int(np.shape(leaves[0])[0]) if np.ndim(leaves[0]) else 0
    if length == 0:
        raise ValueError("a stacked rollout needs a leading time axis of length >= 1")
    return [jax.tree.map(lambda x, i=i: x[i], states) for i in range(length)]


# --------------------------------------------------------------------------------------------
# Top-down matplotlib drawing of planar tasks.


def render_topdown(
    robot_xy: np.ndarray,
    *,
    goal_xy: np.ndarray | None = None,
    goal_radius: float = 0.3,
    hazards_xy: np.ndarray | None = None,
    hazard_radii: np.ndarray | float = 0.2,
    extent: tuple[float, float, float, float] = (-2.0, 2.0, -2.0, 2.0),
    size: tuple[int, int] = (256, 256),
    robot_radius: float = 0.08,
    trail_xy: np.ndarray | None = None,
    title: str | None = None,
) -> np.ndarray:
    """One (H, W, 3) uint8 image of a planar scene seen from above.

    The axes fill the whole image: world point (x, y) lands at column
    `(x - xmin) / (xmax - xmin) * W` and row `(ymax - y) / (ymax - ymin) * H`. Hazards are
    filled discs, the goal a filled disc, the robot a disc drawn on top; `trail_xy` (N, 2)
    draws the path so far.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle

    xmin, xmax, ymin, ymax = (float(v) for v in extent)
    if not (xmax > xmin and ymax > ymin):
        raise ValueError(f"extent must be (xmin, xmax, ymin, ymax) with max > min, got {extent}")
    width, height = (int(v) for v in size)
    if width < 8 or height < 8:
        raise ValueError(f"size must be at least (8, 8) pixels, got {size}")
    robot_xy = np.asarray(robot_xy, dtype=float).reshape(2)

    fig = Figure(figsize=(width / 100, height / 100), dpi=100, facecolor=BACKGROUND_RGB)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(xmin, xmax)
    ax.set_ylim(ymin, ymax)
    ax.set_aspect("auto")
    ax.set_axis_off()
    if hazards_xy is not None:
        hazards_xy = np.asarray(hazards_xy, dtype=float).reshape(-1, 2)
        radii = np.broadcast_to(np.asarray(hazard_radii, dtype=float), (len(hazards_xy),))
        for centre, radius in zip(hazards_xy, radii, strict=True):
            ax.add_patch(Circle(centre, radius, color=HAZARD_RGB, alpha=1.0, lw=0))
    if goal_xy is not None:
        goal_xy = np.asarray(goal_xy, dtype=float).reshape(2)
        ax.add_patch(Circle(goal_xy, goal_radius, color=GOAL_RGB, alpha=1.0, lw=0))
    if trail_xy is not None and len(trail_xy) > 1:
        trail = np.asarray(trail_xy, dtype=float).reshape(-1, 2)
        ax.plot(trail[:, 0], trail[:, 1], color=ROBOT_RGB, lw=1, alpha=0.5)
    ax.add_patch(Circle(robot_xy, robot_radius, color=ROBOT_RGB, lw=0))
    if title:
        ax.text(0.02, 0.98, title, transform=ax.transAxes, va="top", fontsize=8)
    canvas.draw()
    image = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    if image.shape != (height, width, 3):  # rounding of the figure size in inches
        image = _resize_nearest(image, height, width)
    return image


def _resize_nearest(image: np.ndarray, height: int, width: int) -> np.ndarray:
    rows = (np.arange(height) * image.shape[0] / height).astype(int)
    cols = (np.arange(width) * image.shape[1] / width).astype(int)
    return image[rows][:, cols]


def render_tiny_hazard_nav(env: Any, states: Any, size: tuple[int, int] = (256, 256)) -> Frames:
    """Top-down frames of a TinyHazardNav rollout (states: list or stacked pytree)."""
    inner = env.unwrapped
    steps = unstack_states(states)
    positions = np.stack([np.asarray(s.pipeline_state.position) for s in steps])
    return _topdown_frames(
        steps, positions, lambda ps: (np.asarray(ps.goal), np.asarray(ps.hazard)),
        goal_radius=inner.goal_radius, hazard_radii=inner.hazard_radius,
        extent=(-2.5, 2.5, -2.5, 2.5), size=size)


def _topdown_frames(steps: list[Any], positions: np.ndarray, goal_and_hazards, *,
                    size: tuple[int, int], **drawing: Any) -> Frames:
    """`render_topdown` of each state: the robot at `positions[t]` with its trail, the goal
    and hazards that `goal_and_hazards(pipeline_state)` returns, the step's cost as title."""
    frames = []
    for t, s in enumerate(steps):
        goal_xy, hazards_xy = goal_and_hazards(s.pipeline_state)
        frames.append(render_topdown(
            positions[t], goal_xy=goal_xy, hazards_xy=hazards_xy, size=size,
            trail_xy=positions[: t + 1],
            title=f"t={t}  cost={float(s.info.get('cost', 0.0)):.0f}", **drawing,
        ))
    return np.stack(frames)


def render_navigation_topdown(env: Any, states: Any,
                              size: tuple[int, int] = (256, 256)) -> Frames:
    """Top-down frames of a navigation task's rollout (states: list or stacked pytree): the
    robot and its trail, the goal and the hazards (vases, buttons and gremlins are not drawn)
    over the placement area with a margin of 0.5 (the robot may leave it: there are no walls).
    """
    config = env.unwrapped.config
    steps = unstack_states(states)
    positions = np.stack([np.asarray(s.pipeline_state.data.qpos[:2]) for s in steps])
    xmin, ymin, xmax, ymax = (float(v) for v in config.extents)
    extent = (xmin - 0.5, xmax + 0.5, ymin - 0.5, ymax + 0.5)
    return _topdown_frames(
        steps, positions, lambda ps: (np.asarray(ps.goal_xy), np.asarray(ps.hazards_xy)),
        goal_radius=config.goal_size, hazard_radii=config.hazard_size, extent=extent,
        size=size, robot_radius=0.1)


# --------------------------------------------------------------------------------------------
# MuJoCo off-screen rendering of Brax/MJX environments.

_GL_PLATFORMS = ("egl", "osmesa")


def _gl_context(width: int, height: int, platform: str | None) -> tuple[Any, str]:
    """Create and make current an off-screen OpenGL context, trying EGL then OSMesa."""
    requested = platform or os.environ.get("MUJOCO_GL", "").lower() or None
    candidates = [requested] if requested in _GL_PLATFORMS else list(_GL_PLATFORMS)
    errors = []
    for name in candidates:
        try:
            module = importlib.import_module(f"mujoco.{name}")
            context = module.GLContext(width, height)
            context.make_current()
            return context, name
        except Exception as err:  # noqa: BLE001 (each platform fails in its own way)
            errors.append(f"{name}: {type(err).__name__}: {err}")
    raise RendererUnavailableError(
        "MuJoCo cannot open an off-screen OpenGL context here (" + "; ".join(errors) + "). "
        "Install EGL (e.g. `apt-get install libegl1` with Mesa or an NVIDIA driver) or OSMesa "
        "(`apt-get install libosmesa6` and `pip install pyopengl`), or draw planar tasks with "
        "`render_topdown`."
    )


def render_mujoco(
    mj_model: Any,
    qpos_sequence: np.ndarray,
    *,
    size: tuple[int, int] = (320, 240),
    track_body: int = 1,
    distance: float = 4.0,
    elevation: float = -20.0,
    azimuth: float = 90.0,
    platform: str | None = None,
) -> Frames:
    """Frames (T, H, W, 3) of `mj_model` posed at each row of `qpos_sequence` (T, nq).

    A tracking camera follows body `track_body` (1: the robot's root body). `platform` picks
    "egl" or "osmesa" (default: $MUJOCO_GL if it names one, else EGL then OSMesa).
    """
    import mujoco

    qpos_sequence = np.asarray(qpos_sequence, dtype=np.float64)
    if qpos_sequence.ndim != 2 or qpos_sequence.shape[1] != mj_model.nq:
        raise ValueError(
            f"qpos_sequence must have shape (T, {mj_model.nq}), got {qpos_sequence.shape}"
        )
    width, height = (int(v) for v in size)
    context, _ = _gl_context(width, height, platform)
    try:
        model = mj_model
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, height)
        data = mujoco.MjData(model)
        scene = mujoco.MjvScene(model, maxgeom=10_000)
        render_context = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, render_context)
        option, perturb = mujoco.MjvOption(), mujoco.MjvPerturb()
        camera = mujoco.MjvCamera()
        camera.type = mujoco.mjtCamera.mjCAMERA_TRACKING
        camera.trackbodyid = track_body
        camera.distance = distance
        camera.elevation, camera.azimuth = elevation, azimuth
        viewport = mujoco.MjrRect(0, 0, width, height)
        frames = np.empty((len(qpos_sequence), height, width, 3), np.uint8)
        for t, qpos in enumerate(qpos_sequence):
            data.qpos[:] = qpos
            mujoco.mj_forward(model, data)
            mujoco.mjv_updateScene(model, data, option, perturb, camera,
                                   mujoco.mjtCatBit.mjCAT_ALL, scene)
            mujoco.mjr_render(viewport, scene, render_context)
            mujoco.mjr_readPixels(frames[t], None, viewport, render_context)
            frames[t] = frames[t][::-1]  # OpenGL rows start at the bottom
        render_context.free()
    finally:
        context.free()
    return frames


def render_rollout(env: Any, states: Any, *, size: tuple[int, int] | None = None,
                   **kwargs: Any) -> Frames:
    """Frames of a rollout of a registered environment (states: list or stacked pytree).

    Brax/MJX environments go through `render_mujoco`; TinyHazardNav and the navigation tasks
    through `render_topdown`. Other planar tasks can call `render_topdown` with their own arrays.
    """
    from envs.navigation.task import SafetyNavigation
    from envs.tiny import TinyHazardNav

    inner = env.unwrapped
    if isinstance(inner, TinyHazardNav):
        return render_tiny_hazard_nav(env, states, size=size or (256, 256))
    if isinstance(inner, SafetyNavigation):
        return render_navigation_topdown(env, states, size=size or (256, 256))
    sys = getattr(inner, "sys", None)
    if sys is None or getattr(sys, "mj_model", None) is None:
        raise RendererUnavailableError(
            f"no renderer for {type(inner).__name__}: it is neither a Brax/MJX environment "
            "(with sys.mj_model) nor TinyHazardNav; draw it with `render_topdown`"
        )
    steps = unstack_states(states)
    qpos = np.stack([np.asarray(s.pipeline_state.q) for s in steps])
    return render_mujoco(sys.mj_model, qpos, size=size or (320, 240), **kwargs)


# --------------------------------------------------------------------------------------------
# Saving.


def save_video(frames: Frames | Sequence[np.ndarray], path: str | os.PathLike, *,
               fps: int = 20, strip_every: int = 1) -> str:
    """Save frames as `.gif` (Pillow), `.mp4` (matplotlib + ffmpeg) or `.png` (a strip).

    For `.png`, every `strip_every`-th frame is placed side by side in one image.
    Returns the path written.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must have shape (T >= 1, H, W, 3), got {frames.shape}")
    if frames.dtype != np.uint8:
        frames = np.clip(frames, 0, 255).astype(np.uint8)
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if fps < 1:
        raise ValueError(f"fps must be >= 1, got {fps}")
    if suffix == ".gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        images[0].save(path, save_all=True, append_images=images[1:],
                       duration=max(1, round(1000 / fps)), loop=0)
    elif suffix == ".png":
        from PIL import Image

        if strip_every < 1:
            raise ValueError(f"strip_every must be >= 1, got {strip_every}")
        Image.fromarray(np.concatenate(list(frames[::strip_every]), axis=1)).save(path)
    elif suffix == ".mp4":
        if shutil.which("ffmpeg") is None:
            raise RendererUnavailableError(
                "saving .mp4 needs the ffmpeg program on PATH; save a .gif or .png instead"
            )
        from matplotlib import animation
        from matplotlib.figure import Figure

        height, width = frames.shape[1:3]
        fig = Figure(figsize=(width / 100, height / 100), dpi=100)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_axis_off()
        shown = ax.imshow(frames[0])
        writer = animation.FFMpegWriter(fps=fps)
        with writer.saving(fig, path, dpi=100):
            for f in frames:
                shown.set_data(f)
                writer.grab_frame()
    else:
        raise ValueError(f"unsupported video format {suffix!r} in {path!r}; use .gif, .mp4, .png")
    return path
