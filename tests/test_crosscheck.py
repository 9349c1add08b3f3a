"""The cross-check's pieces that need no second venv: the install-time patch of
Safety-Gymnasium's dataclass defaults, the observation mapping by name, the task-id mapping and
the exported-policy reading (scripts/crosscheck_setup.py, scripts/crosscheck.py)."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from helpers import fresh_rng

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


setup = _load(SCRIPTS / "crosscheck_setup.py", "crosscheck_setup_under_test")
xc = _load(SCRIPTS / "crosscheck.py", "crosscheck_under_test")

# Shaped like safety_gymnasium/assets/geoms/hazards.py: a COLOR table of arrays, a default
# taken from it, and an inline np.array default spread over two lines.
ASSET = '''"""Synthetic asset."""

from dataclasses import dataclass, field

import numpy as np

COLOR = {"hazard": np.array([0, 0, 1, 0.25])}


@dataclass
class Thing:
    """A thing."""

    name: str = "thing"
    size: float = 0.2
    locations: list = field(default_factory=list)
    alpha: float = COLOR["hazard"][-1]
    color: np.array = COLOR["hazard"]
    offset: np.ndarray = np.array([1.0, 2.0,
                                   3.0])  # comment kept
    group: np.array = 3

    def doubled(self):
        return 2 * self.offset


class NotADataclass:
    color = np.zeros(3)
'''


def _import_source(tmp_path: Path, source: str, name: str):
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    return _load(path, name)


def test_patch_rewrites_mutable_numpy_defaults_and_keeps_behaviour(tmp_path):
    with pytest.raises(ValueError, match="mutable default"):  # the failure the patch is for
        _import_source(tmp_path, ASSET, "asset_unpatched")
    patched, fields = setup.patch_source(ASSET)
    assert fields == ["Thing.color", "Thing.offset"]
    assert "color: np.array = field(default_factory=lambda: COLOR[\"hazard\"])" in patched
    assert "3.0]))  # comment kept" in patched
    # Only the lines of the two default expressions changed (the second spans two).
    before, after = ASSET.splitlines(), patched.splitlines()
    assert len(before) == len(after)
    assert sum(a != b for a, b in zip(before, after, strict=True)) == 3

    module = _import_source(tmp_path, patched, "asset_patched")
    a, b = module.Thing(), module.Thing()
    assert a.color is module.COLOR["hazard"]  # the same object as the old class default
    np.testing.assert_array_equal(a.offset, [1.0, 2.0, 3.0])
    assert a.offset is not b.offset  # no longer shared between instances
    np.testing.assert_array_equal(a.doubled(), [2.0, 4.0, 6.0])
    assert (a.group, a.size, a.name, a.locations) == (3, 0.2, "thing", [])
    assert a.alpha == 0.25
    np.testing.assert_array_equal(module.Thing(color=np.ones(4)).color, np.ones(4))
    assert isinstance(module.NotADataclass.color, np.ndarray)

    assert setup.patch_source(patched) == (patched, [])  # idempotent


def test_patch_adds_the_field_import_when_missing():
    source = ASSET.replace("from dataclasses import dataclass, field",
                           "from dataclasses import dataclass").replace(
        "    locations: list = field(default_factory=list)\n", "")
    patched, fields = setup.patch_source(source)
    assert fields == ["Thing.color", "Thing.offset"]
    assert "from dataclasses import field\n" in patched
    assert setup.patch_source(patched)[1] == []


def test_patch_tree_is_idempotent(tmp_path):
    package = tmp_path / "safety_gymnasium"
    (package / "assets" / "geoms").mkdir(parents=True)
    (package / "assets" / "geoms" / "hazards.py").write_text(ASSET)
    (package / "assets" / "color.py").write_text("import numpy as np\nCOLOR = {}\n")
    assert setup.patch_tree(package) == {
        str(Path("assets/geoms/hazards.py")): ["Thing.color", "Thing.offset"]}
    once = (package / "assets" / "geoms" / "hazards.py").read_text()
    assert setup.patch_tree(package) == {}
    assert (package / "assets" / "geoms" / "hazards.py").read_text() == once
    with pytest.raises(FileNotFoundError, match="assets"):
        setup.patch_tree(tmp_path)


# The original's observation entries, recorded from Safety-Gymnasium 1.0.0's obs_space_dict
# (SafetyCarGoal1-v0; the Car's ball orientation is a 3x3 matrix).
CAR_ORIGINAL = OrderedDict([
    ("accelerometer", (3,)), ("velocimeter", (3,)), ("gyro", (3,)), ("magnetometer", (3,)),
    ("ballangvel_rear", (3,)), ("ballquat_rear", (3, 3)),
    ("goal_lidar", (16,)), ("hazards_lidar", (16,)), ("vases_lidar", (16,)),
])
CAR_LAYOUT = [("accelerometer", 3), ("velocimeter", 3), ("gyro", 3), ("magnetometer", 3),
              ("ballangvel_rear", 3), ("ballquat_rear", 9),
              ("goal_lidar", 16), ("hazards_lidar", 16), ("vases_lidar", 16)]


def _synthetic_obs(shapes, start=0.0):
    obs, value = OrderedDict(), start
    for name, shape in shapes.items():
        size = int(np.prod(shape))
        obs[name] = np.arange(value, value + size, dtype=np.float64).reshape(shape)
        value += size
    return obs


def test_map_observation_by_name_not_position():
    # The original lists the lidars in another order than the layout asks for.
    shapes = OrderedDict(CAR_ORIGINAL)
    shapes.move_to_end("goal_lidar")
    obs = _synthetic_obs(shapes)
    flat = xc.map_observation(obs, CAR_LAYOUT)
    assert flat.shape == (72,) and flat.dtype == np.float32
    expected = np.concatenate([obs[name].reshape(-1) for name, _ in CAR_LAYOUT])
    np.testing.assert_array_equal(flat, expected)
    np.testing.assert_array_equal(flat[15:24], obs["ballquat_rear"].reshape(-1))  # row-major
    np.testing.assert_array_equal(flat[24:40], obs["goal_lidar"])


def test_map_observation_refuses_missing_or_mis_sized_blocks():
    obs = _synthetic_obs(CAR_ORIGINAL)
    with pytest.raises(ValueError, match="'buttons_lidar'.*it has"):
        xc.map_observation(obs, CAR_LAYOUT + [("buttons_lidar", 16)])
    with pytest.raises(ValueError, match="'gyro' has 3 floats in the original, 4"):
        xc.map_observation(obs, [("gyro", 4)])


def test_check_layout():
    assert xc.check_layout(CAR_LAYOUT, CAR_ORIGINAL) == []
    assert xc.check_layout(CAR_LAYOUT[:4], CAR_ORIGINAL) == [n for n, _ in CAR_LAYOUT[4:]]
    with pytest.raises(ValueError, match=r"\['gremlins_lidar'\] .*no counterpart"):
        xc.check_layout(CAR_LAYOUT + [("gremlins_lidar", 16)], CAR_ORIGINAL)
    with pytest.raises(ValueError, match="differ in size.*'ballquat_rear', 4, \\(3, 3\\)"):
        xc.check_layout([("ballquat_rear", 4)], CAR_ORIGINAL)


def test_original_env_ids():
    assert xc.original_env_id("SafetyPointGoal1") == "SafetyPointGoal1-v0"
    assert xc.original_env_id("SafetyPointButton1", {}) == "SafetyPointButton1-v0"
    assert xc.original_env_id("SafetyCarGoal1", {"solver": "cg"}) == "SafetyCarGoal1-v0"
    assert xc.original_env_id("SafetyCarGoal1", {"episode_length": 1000}) == "SafetyCarGoal1-v0"
    with pytest.raises(ValueError, match="num_hazards"):
        xc.original_env_id("SafetyPointGoal1", {"num_hazards": 4, "solver": "cg"})
    with pytest.raises(ValueError, match="SafetyAntVelocity.*supports"):
        xc.original_env_id("SafetyAntVelocity")


def test_original_ids_cover_the_navigation_tasks():
    from envs.navigation import TASKS

    assert set(xc.ORIGINAL_IDS) == set(TASKS)


# Safety-Gymnasium 1.0.0's obs_space_dict entries, recorded, for the tasks validated against it.
ORIGINAL_OBSERVATIONS = {
    "SafetyPointGoal1": ["accelerometer", "velocimeter", "gyro", "magnetometer", "goal_lidar",
                         "hazards_lidar", "vases_lidar"],
    "SafetyPointButton1": ["accelerometer", "velocimeter", "gyro", "magnetometer",
                           "buttons_lidar", "goal_lidar", "hazards_lidar", "gremlins_lidar"],
    "SafetyCarGoal1": list(CAR_ORIGINAL),
}


@pytest.mark.parametrize("task", sorted(ORIGINAL_OBSERVATIONS))
def test_our_layout_maps_onto_the_original(task):
    import envs

    env = envs.make(task)
    names = ORIGINAL_OBSERVATIONS[task]
    shapes = {n: CAR_ORIGINAL.get(n, (16,)) for n in names}  # the other lidars: 16 bins
    assert xc.check_layout(env.observation_blocks, shapes) == []
    assert [n for n, _ in env.observation_blocks] == names  # same order, too
    assert env.episode_length == 1000  # the original's


def test_mean_and_se():
    mean, se = xc.mean_and_se([1.0, 2.0, 3.0, 6.0])
    assert mean == 3.0
    assert se == pytest.approx(np.std([1, 2, 3, 6], ddof=1) / 2.0)
    assert xc.mean_and_se([5.0]) == (5.0, None)
    with pytest.raises(ValueError):
        xc.mean_and_se([])


def _write_policy(path: Path, normalize: bool) -> dict:
    rng = fresh_rng()
    layout = [("a", 3), ("b", 2)]
    fields = {
        "format_version": np.array(1), "env": np.array("SafetyPointGoal1"),
        "env_options": np.array(json.dumps({})), "activation": np.array("tanh"),
        "num_layers": np.array(2),
        "kernel_0": rng.normal(size=(5, 4)).astype(np.float32),
        "bias_0": rng.normal(size=4).astype(np.float32),
        "kernel_1": rng.normal(size=(4, 2)).astype(np.float32),
        "bias_1": rng.normal(size=2).astype(np.float32),
        "normalize_observations": np.array(normalize),
        "obs_mean": rng.normal(size=5).astype(np.float32),
        "obs_std": rng.uniform(0.5, 2.0, size=5).astype(np.float32),
        "obs_clip": np.array(10.0, np.float32),
        "action_low": -np.ones(2, np.float32), "action_high": np.ones(2, np.float32),
        "action_repeat": np.array(2), "episode_length": np.array(1000),
        "obs_size": np.array(5), "obs_layout": np.array(json.dumps(layout)),
        "seed": np.array(0), "checkpoint_step": np.array(8), "member": np.array(0),
    }
    np.savez(path, **fields)
    return fields


@pytest.mark.parametrize("normalize", [True, False])
def test_load_exported_policy(tmp_path, normalize):
    f = _write_policy(tmp_path / "policy.npz", normalize)
    policy = xc.load_exported(tmp_path / "policy.npz")
    assert policy.env == "SafetyPointGoal1" and dict(policy.env_options) == {}
    assert (int(policy.action_repeat), int(policy.episode_length)) == (2, 1000)
    assert [(str(n), int(s)) for n, s in policy.obs_layout] == [("a", 3), ("b", 2)]
    obs = np.array([0.5, -1.0, 2.0, 30.0, -0.2], np.float32)
    x = np.clip((obs - f["obs_mean"]) / f["obs_std"], -10, 10) if normalize else obs
    mean = np.tanh(x @ f["kernel_0"] + f["bias_0"]) @ f["kernel_1"] + f["bias_1"]
    np.testing.assert_allclose(policy.act(obs), np.clip(mean, -1, 1), rtol=1e-5, atol=1e-6)
