"""MuJoCo MJX imported without its Warp notice.

`mujoco.mjx.warp` (imported by `mujoco.mjx`, and so by Brax) `print`s "Failed to import warp:
..." and "Failed to import mujoco_warp: ..." to stdout on every machine without NVIDIA Warp,
although MJX only uses Warp when asked to (`impl="warp"`, or MJX_GPU_DEFAULT_WARP=true on a
CUDA GPU). These environments never ask for it (their MJX models use the JAX implementation),
so `import_mjx_quietly` imports MJX with those two lines dropped, any other output passed on.
When MJX_GPU_DEFAULT_WARP or MJX_WARP_ENABLED is true, Warp is wanted and the notice stays.

`envs/__init__.py` calls it before anything imports Brax, as do `shapo_jax.rollout` and
`shapo_jax.training` (by importing `envs` first).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from collections.abc import Mapping

WARP_SWITCHES = ("MJX_GPU_DEFAULT_WARP", "MJX_WARP_ENABLED")
WARP_NOTICE = re.compile(r"Failed to import (mujoco_)?warp: ")


def warp_requested(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks MJX for its Warp implementation."""
    environ = os.environ if environ is None else environ
    return any(environ.get(name, "").strip().lower() in ("true", "1") for name in WARP_SWITCHES)


def without_warp_notice(text: str) -> str:
    """`text` without the lines of MJX's Warp import notice."""
    return "".join(line for line in text.splitlines(keepends=True)
                   if not WARP_NOTICE.match(line))


def import_mjx_quietly() -> None:
    """Import `mujoco.mjx` (once per process), dropping Warp's import notice unless Warp is
    requested (`warp_requested`)."""
    if "mujoco.mjx.warp" in sys.modules or warp_requested():
        return
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            import mujoco.mjx  # noqa: F401
    finally:
        sys.stdout.write(without_warp_notice(captured.getvalue()))
