"""study/autosave.sh and study/stage_progress.sh on a scratch git repository: the study's state
is committed while the watched process lives (newest checkpoint only, older ones leave the
tree), and nothing is committed while other work is staged."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from helpers import fresh_rng

ROOT = Path(__file__).resolve().parents[1]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def study_repo(tmp_path: Path) -> tuple[Path, Path, list[int]]:
    """A repository with the study scripts and one run whose checkpoint `old` is committed
    and whose newer checkpoints (random steps above it) are not."""
    rng = fresh_rng()
    old = int(rng.integers(1, 50))
    newer = sorted({old + int(k) for k in rng.integers(1, 500, size=3)})
    repo = tmp_path / "repo"
    (repo / "study").mkdir(parents=True)
    for script in ("autosave.sh", "stage_progress.sh"):
        shutil.copy(ROOT / "study" / script, repo / "study" / script)
    _write(repo / ".gitignore", "runs/\n")
    run = repo / "study" / "runs" / "Task-10M" / "part"
    _write(run / "config.json", "{}")
    _write(run / "metrics.jsonl", '{"update": 1}\n')
    for step in [old, *newer]:
        _write(run / "checkpoints" / str(step) / "commit_success.txt", f"written at {repo}")
        _write(run / "checkpoints" / str(step) / "state", str(step))
    _write(run.parent / "wall_times.log", "2026-01-01T00:00:00Z start part\n")
    _git(repo, "init", "-q")
    _git(repo, "config", "user.name", "test")
    _git(repo, "config", "user.email", "test@example.com")
    _git(repo, "add", ".gitignore", "study")
    _git(repo, "add", "-f", str(run / "config.json"), str(run / "checkpoints" / str(old)))
    _git(repo, "commit", "-q", "-m", "start")
    return repo, run, [old, *newer]


def _autosave(repo: Path, lifetime: float) -> subprocess.CompletedProcess:
    watched = subprocess.Popen(["sleep", str(lifetime)])
    reaper = threading.Thread(target=watched.wait)  # reaped at once: no zombie answers kill -0
    reaper.start()
    try:
        return subprocess.run(["bash", "study/autosave.sh", str(watched.pid)], cwd=repo,
                              env={"PATH": os.environ["PATH"], "AUTOSAVE_EVERY": "1"},
                              capture_output=True, text=True, timeout=60)
    finally:
        reaper.join()


def test_autosave_commits_the_newest_checkpoint_only(study_repo):
    repo, run, steps = study_repo
    result = _autosave(repo, lifetime=3.5)
    assert result.returncode == 0, result.stderr
    log = _git(repo, "log", "--format=%s")
    assert log.count("autosave") == 1, log  # later rounds find nothing new to commit
    assert "2026-01-01T00:00:00Z start part" in log
    tracked = _git(repo, "ls-files", "study/runs").split()
    held = {Path(p).relative_to(run.relative_to(repo) / "checkpoints").parts[0]
            for p in tracked if "/checkpoints/" in p}
    assert held == {str(max(steps))}
    assert str(run.relative_to(repo) / "metrics.jsonl") in tracked
    text = _git(repo, "show", f"HEAD:{run.relative_to(repo)}/checkpoints/{max(steps)}/"
                "commit_success.txt")
    assert str(repo) not in text  # names no directory of the machine it ran on


def test_autosave_leaves_other_staged_work_alone(study_repo):
    repo, _, _ = study_repo
    _write(repo / "notes.md", "work in progress")
    _git(repo, "add", "notes.md")
    result = _autosave(repo, lifetime=2.5)
    assert result.returncode == 0
    assert "other staged changes, not committing" in result.stderr
    assert _git(repo, "log", "--format=%s").split("\n")[0] == "start"
    assert "notes.md" in _git(repo, "diff", "--cached", "--name-only")
