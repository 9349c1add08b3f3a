"""Top-down renderer: image shape, hazard and goal drawn where the world coordinates say."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import fresh_rng, fresh_seed

import envs
from envs import render


def _pixel(x: float, y: float, extent, size) -> tuple[int, int]:
    xmin, xmax, ymin, ymax = extent
    width, height = size
    col = int((x - xmin) / (xmax - xmin) * width)
    row = int((ymax - y) / (ymax - ymin) * height)
    return row, col


def _is(rgb_pixel, colour) -> bool:
    return np.allclose(rgb_pixel / 255.0, colour, atol=0.03)


def test_topdown_draws_hazard_goal_and_robot_where_they_are():
    rng = fresh_rng()
    extent, size = (-3.0, 2.0, -1.0, 3.0), (200, 160)
    hazard, goal, robot = np.array([-1.5, 2.0]), np.array([1.0, 0.0]), np.array([0.5, 2.2])
    hazard = hazard + rng.uniform(-0.2, 0.2, 2)
    image = render.render_topdown(robot, goal_xy=goal, goal_radius=0.3, hazards_xy=hazard[None],
                                  hazard_radii=0.5, extent=extent, size=size)
    assert image.shape == (160, 200, 3) and image.dtype == np.uint8
    assert _is(image[_pixel(*hazard, extent, size)], render.HAZARD_RGB)
    assert _is(image[_pixel(*goal, extent, size)], render.GOAL_RGB)
    assert _is(image[_pixel(*robot, extent, size)], render.ROBOT_RGB)
    # Just outside the hazard disc, and far from everything: background.
    assert _is(image[_pixel(hazard[0] + 0.6, hazard[1], extent, size)], render.BACKGROUND_RGB)
    assert _is(image[_pixel(-2.5, -0.5, extent, size)], render.BACKGROUND_RGB)
    # The hazard's painted area matches the disc's area in pixels (to antialiasing).
    painted = np.all(np.abs(image / 255.0 - render.HAZARD_RGB) < 0.03, axis=-1).sum()
    expected = np.pi * 0.5**2 * (size[0] / 5.0) * (size[1] / 4.0)
    assert abs(painted - expected) / expected < 0.08


def test_tiny_hazard_nav_rollout_frames_and_files(tmp_path):
    env = envs.make("TinyHazardNav")
    state = env.reset(jax.random.PRNGKey(fresh_seed()))
    states = [state]
    for _ in range(4):
        state = env.step(state, jnp.array([1.0, 0.0]))
        states.append(state)
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
    frames = render.render_rollout(env, stacked, size=(96, 64))
    assert frames.shape == (5, 64, 96, 3)
    np.testing.assert_array_equal(frames, render.render_rollout(env, states, size=(96, 64)))
    hazard = np.asarray(states[0].pipeline_state.hazard)
    row, col = _pixel(*hazard, (-2.5, 2.5, -2.5, 2.5), (96, 64))
    assert _is(frames[0][row, col], render.HAZARD_RGB)
    gif = render.save_video(frames, tmp_path / "a.gif")
    png = render.save_video(frames, tmp_path / "a.png", strip_every=2)
    from PIL import Image

    assert Image.open(gif).n_frames == 5
    assert Image.open(png).size == (96 * 3, 64)
    with pytest.raises(ValueError, match="unsupported video format"):
        render.save_video(frames, tmp_path / "a.avi")


def test_unrenderable_env_raises_clear_error():
    class Plain:
        unwrapped = object()

    with pytest.raises(render.RendererUnavailableError, match="render_topdown"):
        render.render_rollout(Plain(), [None])


def test_navigation_rollout_is_drawn_from_above():
    """The navigation tasks' goal and hazards are positions, not bodies: `render_rollout` draws
    them, and the robot, from above where the state says they are."""
    env = envs.make("SafetyPointGoal1")
    state = jax.jit(env.reset)(jax.random.PRNGKey(fresh_seed()))
    frames = render.render_rollout(env, [state, state], size=(200, 200))
    assert frames.shape == (2, 200, 200, 3)
    extent, size = (-2.0, 2.0, -2.0, 2.0), (200, 200)  # extents [-1.5, 1.5]^2 and a margin
    ps = state.pipeline_state
    assert _is(frames[0][_pixel(*np.asarray(ps.data.qpos[:2]), extent, size)], render.ROBOT_RGB)
    assert _is(frames[0][_pixel(*np.asarray(ps.goal_xy), extent, size)], render.GOAL_RGB)
    for hazard in np.asarray(ps.hazards_xy):
        assert _is(frames[0][_pixel(*hazard, extent, size)], render.HAZARD_RGB)
