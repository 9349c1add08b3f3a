"""MuJoCo MJX's "Failed to import warp" notice: gone from every command on a machine without
NVIDIA Warp, unless Warp is asked for (envs/quiet_mjx.py). Each command runs in a fresh
process in which Warp cannot be imported, as on such a machine, whether or not this one has
it installed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from envs.quiet_mjx import warp_requested, without_warp_notice

ROOT = Path(__file__).resolve().parents[1]
NOTICE = "Failed to import"


# None in sys.modules: `import warp` fails with ImportError, as without the package
WITHOUT_WARP = "import sys; sys.modules['warp'] = sys.modules['mujoco_warp'] = None\n"


def run_python(code: str, **environ: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MJX_GPU_DEFAULT_WARP", "MJX_WARP_ENABLED")}
    env.update(JAX_PLATFORMS="cpu", **environ)
    return subprocess.run([sys.executable, "-c", WITHOUT_WARP + code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("code, output", [
    ("from shapo_jax.training.cli import main; main(['--help'])", "usage: shapo-train"),
    ("from shapo_jax.experiments.cli import sweep_main; sweep_main(['--help'])",
     "usage: shapo-sweep"),
    ("import envs; print(envs.list_envs())", "TinyHazardNav"),
    ("import shapo_jax.rollout, brax.envs; print('imported')", "imported"),
])
def test_no_warp_notice(code, output):
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert NOTICE not in proc.stdout and NOTICE not in proc.stderr, proc.stdout[:500]
    assert output in proc.stdout  # the rest of the output passes


def test_the_notice_stays_when_warp_is_asked_for():
    proc = run_python("import envs", MJX_GPU_DEFAULT_WARP="true")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Failed to import warp:" in proc.stdout + proc.stderr


def test_warp_requested_and_the_filter():
    assert not warp_requested({})
    assert not warp_requested({"MJX_GPU_DEFAULT_WARP": "false"})
    assert warp_requested({"MJX_GPU_DEFAULT_WARP": "True"})
    assert warp_requested({"MJX_WARP_ENABLED": "1"})
    text = ("Failed to import warp: No module named 'warp'\n"
            "something else\n"
            "Failed to import mujoco_warp: No module named 'warp'\n"
            "we Failed to import warp: kept, not at a line start\n")
    assert without_warp_notice(text) == ("something else\n"
                                         "we Failed to import warp: kept, not at a line start\n")
