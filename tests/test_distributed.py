"""`--distributed` on one machine: shapo-train in two processes of two CPU devices each, joined
by jax.distributed (gloo collectives), computes the run of one process with the same four
devices, writes its files once, and checkpoints and resumes across processes."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import envs
from shapo_jax.experiments.cli import build_sweep_parser, sweep_main
from shapo_jax.training import TrainConfig
from shapo_jax.training.cli import build_parser, distributed_options, main
from shapo_jax.training.devices import HOST_DEVICE_FLAG
from shapo_jax.training.runner import Runner

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 600  # seconds for one launch of all its processes; a hang fails, never blocks

# 2 seeds x 64 envs x 50 steps: 3,200 env steps per seed and update, one update per log
# point, an evaluation every 2nd log point and at the last.
UPDATE_STEPS = 3200
RUN = ["--env", "TinyHazardNav", "--algo", "shapo_ppo_lag", "--seeds", "2", "--num-envs", "64",
       "--cost-limit", "2", "--delta-down", "0.01", "--no-plot",
       "--set", "rollout_length=50", "--set", "num_minibatches=2", "--set", "update_epochs=1",
       "--set", f"log_every_steps={UPDATE_STEPS}", "--set", "eval_every=2",
       "--set", "eval_envs=4", "--set", "hidden_sizes=[16]", "--set", "lagrange_init=0.5"]


def free_port() -> int:
    """A TCP port nobody listens on now (the OS picks it for a socket bound to port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(argvs: list[list[str]], devices: int) -> list[str]:
    """Run `shapo-train argv` once per argv at the same time, each process with `devices` CPU
    devices; return their stdouts. Any failure, or TIMEOUT, kills them all and fails the
    test with every process's stderr."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("JAX_CPU_COLLECTIVES_IMPLEMENTATION", None)  # the CLI's choice (gloo) applies
    flags = re.sub(re.escape(HOST_DEVICE_FLAG) + r"=\d+", "", env.get("XLA_FLAGS", ""))
    env["XLA_FLAGS"] = f"{flags} {HOST_DEVICE_FLAG}={devices}".strip()
    procs = [subprocess.Popen([sys.executable, "-m", "shapo_jax.training.cli", *argv], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for argv in argvs]
    deadline = time.monotonic() + TIMEOUT
    while any(p.poll() is None for p in procs):
        failed = any(p.poll() not in (None, 0) for p in procs)
        if failed or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
    outputs = [proc.communicate() for proc in procs]
    if any(proc.returncode != 0 for proc in procs):
        report = "\n".join(f"--- process {i} (exit {proc.returncode}) stderr:\n{err[-4000:]}"
                           for i, (proc, (_, err)) in enumerate(zip(procs, outputs, strict=True)))
        pytest.fail(f"shapo-train {argvs[0]} failed or ran past {TIMEOUT} s:\n{report}")
    return [out for out, _ in outputs]


def launch_two(argv: list[str]) -> list[str]:
    """`shapo-train argv` as processes 0 and 1 of a jax.distributed job on this machine."""
    coordinator = ["--coordinator", f"127.0.0.1:{free_port()}", "--num-processes", "2"]
    return launch([[*argv, *coordinator, "--process-id", str(i)] for i in range(2)], devices=2)


def summary(stdout: str) -> dict:
    """The final summary shapo-train prints (the JSON object after the progress lines),
    without the fields that differ between any two runs."""
    data = json.loads(stdout[stdout.rindex("\n{\n") + 1:])
    return {k: v for k, v in data.items() if k not in ("compile_seconds", "out")}


def records(run: Path) -> list[dict]:
    """metrics.jsonl of `run` without the timing (sps)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "sps"} for row in rows]


def assert_same_figures(got: dict, want: dict, where: str) -> None:
    """The same keys; integers, strings and nulls equal, floats within rounding (rtol 1e-5)."""
    assert got.keys() == want.keys(), where
    for key, value in want.items():
        if isinstance(value, float) and isinstance(got[key], float):
            np.testing.assert_allclose(got[key], value, rtol=1e-5, atol=1e-7,
                                       err_msg=f"{where}: {key}")
        else:
            assert got[key] == value, (where, key, got[key], value)


def final_checkpoint(run: Path):
    """(step, TrainState) of the newest checkpoint of `run`, restored on this process."""
    config = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    runner = Runner(config, envs.make(config.env), run, resume=True, log=lambda *a: None)
    try:
        return runner.initial_state()
    finally:
        runner.checkpointer.close()


def test_two_processes_equal_one_process_with_the_same_devices(tmp_path):
    total = ["--total-steps", str(3 * UPDATE_STEPS)]
    one = tmp_path / "one"
    reference = launch([[*RUN, *total, "--out", str(one)]], devices=4)[0]
    assert "on 4 cpu device(s)" in reference

    # Two processes of two devices: two updates, then resumed from their checkpoint to three.
    two = tmp_path / "two"
    first = launch_two([*RUN, "--total-steps", str(2 * UPDATE_STEPS), "--out", str(two)])
    assert all("on 4 cpu device(s)" in out for out in first)  # one mesh over both processes
    # Process 0 alone writes the run's files: one record per seed and log point, no copies.
    assert [(r["env_steps"], r["seed"]) for r in records(two)] == [
        (u * UPDATE_STEPS, s) for u in (1, 2) for s in (0, 1)]
    resumed = launch_two(["--resume", str(two), *total])
    assert all("resuming" in out and "at update 2 of 3" in out for out in resumed)

    # The same four devices run the same partitioned program. XLA all-gathers each rollout
    # and updates on every device, so no float sum crosses devices on the way to the state
    # (the task's costs are 0 or 1: their means are exact in any order); only some logged
    # means (reward_rate) are sums of the devices' partial sums through one all-reduce, which
    # gloo adds in ring order and XLA:CPU within a process in device order: equal to the
    # last bit or two, not bit for bit.
    got, want = records(two), records(one)
    assert len(got) == len(want) == 3 * 2
    for a, b in zip(got, want, strict=True):
        assert_same_figures(a, b, f"env_steps {b['env_steps']}, seed {b['seed']}")
    assert sum("eval_return" in r for r in want) == 2 * 2  # log points 2 and 3
    assert summary(resumed[0]) == summary(resumed[1])
    assert_same_figures(summary(resumed[0]), summary(reference), "summary")
    assert json.loads((two / "config.json").read_text()) == json.loads(
        (one / "config.json").read_text())

    # The checkpoint the two processes wrote together is whole and, restored here on this
    # process's own devices, bit for bit the single process's state.
    (step_one, state_one), (step_two, state_two) = final_checkpoint(one), final_checkpoint(two)
    assert step_one == step_two == 3
    leaves_one = jax.tree_util.tree_leaves_with_path(state_one)
    leaves_two = jax.tree_util.tree_leaves(state_two)
    assert len(leaves_one) == len(leaves_two)
    for (path, a), b in zip(leaves_one, leaves_two, strict=True):
        np.testing.assert_array_equal(np.asarray(b), np.asarray(a),
                                      err_msg=jax.tree_util.keystr(path))


# ----- the options: all three or none, checked before JAX starts --------------------------


def test_options_give_initialize_its_arguments_or_autodetection():
    parse = build_parser().parse_args
    assert distributed_options(parse([])) is None
    assert distributed_options(parse(["--distributed"])) == {}  # JAX detects the cluster
    explicit = {"coordinator_address": "10.0.0.7:1234", "num_processes": 3, "process_id": 2}
    flags = ["--coordinator", "10.0.0.7:1234", "--num-processes", "3", "--process-id", "2"]
    assert distributed_options(parse(flags)) == explicit  # implies --distributed
    assert distributed_options(parse(["--distributed", *flags])) == explicit
    assert distributed_options(build_sweep_parser().parse_args(flags)) == explicit
    ipv6 = ["--coordinator", "[::1]:80", "--num-processes", "1", "--process-id", "0"]
    assert distributed_options(parse(ipv6))["coordinator_address"] == "[::1]:80"


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--coordinator", "127.0.0.1:1234"], ["missing --num-processes, --process-id"]),
        (["--num-processes", "2", "--process-id", "0"], ["missing --coordinator"]),
        (["--coordinator", "127.0.0.1", "--num-processes", "2", "--process-id", "0"],
         ["HOST:PORT", "'127.0.0.1'"]),
        (["--coordinator", "host:70000", "--num-processes", "2", "--process-id", "0"],
         ["1..65535", "'host:70000'"]),
        (["--coordinator", ":1234", "--num-processes", "2", "--process-id", "0"],
         ["HOST:PORT", "':1234'"]),
        (["--coordinator", "h:1", "--num-processes", "0", "--process-id", "0"],
         ["--num-processes must be a positive integer, got 0"]),
        (["--coordinator", "h:1", "--num-processes", "2", "--process-id", "2"],
         ["--process-id must be in 0..1", "got 2"]),
        (["--coordinator", "h:1", "--num-processes", "2", "--process-id", "-1"],
         ["--process-id must be in 0..1", "got -1"]),
    ],
    ids=["no-count", "no-coordinator", "no-port", "port-range", "no-host", "zero-processes",
         "id-too-large", "id-negative"],
)
@pytest.mark.parametrize("tool", ["shapo-train", "shapo-sweep"])
def test_bad_options_fail_with_one_clear_message(tool, flags, expected, tmp_path, capsys,
                                                 monkeypatch):
    def refuse(**kwargs):
        raise AssertionError("jax.distributed.initialize called on bad input")

    monkeypatch.setattr(jax.distributed, "initialize", refuse)
    out = tmp_path / "run"
    if tool == "shapo-train":
        argv, entry = ["--env", "TinyHazardNav", "--out", str(out), *flags], main
    else:
        argv = ["--algos", "ppo_lag", "--envs", "TinyHazardNav", "--out", str(out), *flags]
        entry = sweep_main
    with pytest.raises(SystemExit) as exit_info:
        entry(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{tool}: error: ") and err.count("\n") == 1, err
    for text in expected:
        assert text in err, (text, err)
    assert not out.exists()


def test_start_chooses_gloo_and_plain_distributed_without_a_cluster_fails_clearly(
        tmp_path, capsys, monkeypatch):
    calls = []

    def initialize(**kwargs):  # as JAX does when it detects no cluster
        calls.append((kwargs, jax.config.values["jax_cpu_collectives_implementation"]))
        raise ValueError("coordinator_address should be defined.")

    monkeypatch.setattr(jax.distributed, "initialize", initialize)
    monkeypatch.delenv("JAX_CPU_COLLECTIVES_IMPLEMENTATION", raising=False)
    monkeypatch.setenv("XLA_FLAGS", f"{HOST_DEVICE_FLAG}=1")  # no CPU split of this process
    before = jax.config.values["jax_cpu_collectives_implementation"]
    jax.config.update("jax_cpu_collectives_implementation", None)  # as in JAX before 0.5
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(["--env", "TinyHazardNav", "--distributed", "--out", str(tmp_path / "run")])
    finally:
        jax.config.update("jax_cpu_collectives_implementation", before)
    assert exit_info.value.code == 2
    assert calls == [({}, "gloo")]  # auto-detection, CPU collectives chosen before it
    err = capsys.readouterr().err
    assert err == ("shapo-train: error: --distributed: JAX detected no cluster (coordinator_"
                   "address should be defined.); give --coordinator HOST:PORT --num-processes "
                   "N --process-id I\n")
    assert not (tmp_path / "run").exists()
