"""`shapo-eval` and `shapo-export`: a trained run outside the trainer.

    shapo-eval runs/demo --episodes 32 --json        # mean +- s.e. of return and cost
    shapo-eval runs/demo --member 1 --video ep.gif   # another seed; one episode rendered
    shapo-export runs/demo --out policy.npz          # the policy for NumPy alone

Exit status: 0 on success, 2 for bad input (directory, checkpoint, member, options), reported
before anything is compiled, 1 when the member diverged (it is reported, never evaluated or
exported). The logic is in `shapo_jax.training.evaluation`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

VIDEO_SUFFIXES = (".gif", ".mp4", ".png")


def _add_selection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a shapo-train output directory")
    parser.add_argument("--checkpoint", type=int, metavar="STEP",
                        help="the checkpoint (updates done when it was saved; default: the "
                             "newest)")
    parser.add_argument("--member", type=int, default=0, metavar="K",
                        help="which seed of the run (0 .. seeds - 1; default 0)")


def build_eval_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shapo-eval",
        description="Evaluate a member of a trained run over full episodes: mean and "
                    "standard error of the episode return and cost, written to "
                    "RUN_DIR/eval/member{K}-checkpoint{STEP}-{policy}-seed{S}-episodes{N}"
                    ".json.")
    _add_selection_arguments(parser)
    parser.add_argument("--episodes", type=int, default=32, metavar="N",
                        help="full episodes to run, as one batch (default 32)")
    parser.add_argument("--stochastic", action="store_true",
                        help="sample actions from the Gaussian policy (default: its mean)")
    parser.add_argument("--seed", type=int, metavar="S",
                        help="evaluation seed: the episodes' layouts and the sampled actions "
                             "(default: the member's index, so each seed of a run meets "
                             "layouts of its own)")
    parser.add_argument("--video", metavar="FILE",
                        help="render the first episode to FILE (.gif, .mp4 with ffmpeg, or "
                             ".png strip); planar tasks are drawn from above, Brax robots "
                             "with MuJoCo's OpenGL renderer")
    parser.add_argument("--json", action="store_true",
                        help="print the report as one JSON object on the last line")
    return parser


def build_export_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shapo-export",
        description="Write a member's deterministic policy as a plain .npz that "
                    "shapo_jax.policy.exported.load_policy runs with NumPy alone.")
    _add_selection_arguments(parser)
    parser.add_argument("--out", required=True, metavar="FILE", help="the .npz to write")
    return parser


def _fail(prog: str, message: str, status: int = 2) -> None:
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(status)


def _check_video(path: str, env: Any) -> None:
    """Refuse a video that cannot be written, before anything is compiled."""
    suffix = Path(path).suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise ValueError(f"--video {path}: unsupported format {suffix or '(none)'!r}; "
                         f"valid: {', '.join(VIDEO_SUFFIXES)}")
    if suffix == ".mp4" and shutil.which("ffmpeg") is None:
        raise ValueError(f"--video {path}: writing .mp4 needs the ffmpeg program on PATH; "
                         "write a .gif or .png instead")
    from envs.navigation.task import SafetyNavigation
    from envs.render import render_mujoco
    from envs.tiny import TinyHazardNav

    inner = env.unwrapped
    if isinstance(inner, TinyHazardNav | SafetyNavigation):
        return  # drawn from above with matplotlib: works everywhere
    model = getattr(getattr(inner, "sys", None), "mj_model", None)
    if model is None:
        raise ValueError(f"--video: no renderer for {type(inner).__name__}")
    render_mujoco(model, model.qpos0[None], size=(16, 16))  # RendererUnavailableError


def _print_report(report: dict[str, Any]) -> None:
    where = (f"{report['env']}, member {report['member']} (seed {report['run_seed']}), "
             f"checkpoint {report['checkpoint_step']}")
    if report["diverged"]:
        print(f"{where}: DIVERGED during training; not evaluated (no figures)")
        return

    def figure(name: str) -> str:
        mean, se = report[f"{name}_mean"], report[f"{name}_se"]
        return f"{mean:.3f} +- {se:.3f}" if se is not None else f"{mean:.3f}"

    from shapo_jax.training.evaluation import policy_kind

    print(f"{where}: {report['episodes']} episode(s) of {report['episode_length']} steps, "
          f"{policy_kind(report)} policy, seed {report['seed']}")
    print(f"  episode return {figure('episode_return')}   episode cost "
          f"{figure('episode_cost')} (mean +- standard error; cost limit "
          f"{report['cost_limit']:g})")


def eval_main(argv: list[str] | None = None) -> int:
    prog = "shapo-eval"
    args = build_eval_parser().parse_args(argv)
    if args.episodes < 1:
        _fail(prog, f"--episodes must be a positive integer, got {args.episodes}")
    from envs.render import RendererUnavailableError
    from shapo_jax.training import evaluation

    try:
        selection = evaluation.select_run(args.run_dir, args.checkpoint, args.member)
        env = selection.config.make_env()
        if args.video:
            _check_video(args.video, env)
        restored = evaluation.restore_member(selection, env)
    except (ValueError, FileNotFoundError, RendererUnavailableError) as error:
        _fail(prog, str(error))
    try:
        report, recording = evaluation.evaluate_member(
            restored, episodes=args.episodes, seed=args.seed,
            deterministic=not args.stochastic, record_first=bool(args.video))
    except FloatingPointError as error:
        _fail(prog, f"member {selection.member}: {error}", status=1)
    path = evaluation.write_report(selection.directory, report)
    _print_report(report)
    print(f"wrote {path}")
    if recording is not None:
        from envs.render import render_rollout, save_video
        from shapo_jax.io import atomic_save

        frames = render_rollout(env, recording)
        fps = max(1, min(50, round(1.0 / (env.dt * selection.config.action_repeat))))
        atomic_save(args.video, lambda tmp: save_video(frames, tmp, fps=fps))
        print(f"wrote {args.video} ({len(frames)} frames, episode 0)")
    if args.json:
        print(json.dumps(report, sort_keys=True))
    if report["diverged"]:
        print(f"{prog}: member {selection.member} diverged: no figures", file=sys.stderr)
        return 1
    return 0


def export_main(argv: list[str] | None = None) -> int:
    prog = "shapo-export"
    args = build_export_parser().parse_args(argv)
    from shapo_jax.training import evaluation

    try:
        selection = evaluation.select_run(args.run_dir, args.checkpoint, args.member)
        restored = evaluation.restore_member(selection)
    except (ValueError, FileNotFoundError) as error:
        _fail(prog, str(error))
    try:
        fields = evaluation.policy_fields(restored)
    except evaluation.RunError as error:
        _fail(prog, str(error), status=1)
    path = evaluation.write_policy(args.out, fields)
    print(f"wrote {path}: {selection.config.env}, member {selection.member} (seed "
          f"{selection.seed}), checkpoint {selection.step}, {int(fields['num_layers'])} "
          f"layers, obs {int(fields['obs_size'])} -> actions {len(fields['action_low'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(eval_main())
