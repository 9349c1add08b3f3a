#!/bin/bash
# Stage the 10M study's state for a commit, so that a fresh clone continues it: each run
# directory's config, metrics, TensorBoard events, `done` marker and its newest checkpoint
# only (about 9 MB for 4 seeds); older checkpoints leave the index. Stop the study first
# (kill its shapo-train process: the newest checkpoint is at most 10 updates old), then run
#   bash study/stage_progress.sh && .venv/bin/python study/report_10m.py && git commit
set -euo pipefail
cd "$(dirname "$0")/.."
for study in study/runs/*/; do
  study=${study%/}
  for dir in "$study"/*/; do
    dir=${dir%/}
    [ -f "$dir/config.json" ] || continue
    for item in config.json metrics.jsonl tensorboard done; do
      if [ -e "$dir/$item" ]; then git add -f "$dir/$item"; fi
    done
    [ -d "$dir/checkpoints" ] || continue  # stopped before its first checkpoint
    newest=$(find "$dir/checkpoints" -mindepth 1 -maxdepth 1 -type d -regex '.*/[0-9]+' \
             -printf '%f\n' | sort -n | tail -1)
    [ -n "$newest" ] || continue
    # orbax's commit_success.txt files name the checkpoint's absolute path; only their
    # presence matters, so the text names no directory of this machine
    find "$dir/checkpoints/$newest" -name commit_success.txt \
      -exec sh -c 'echo "Checkpoint commit was successful" > "$1"' _ {} \;
    git add -f "$dir/checkpoints/$newest"
    for old in $(git ls-files "$dir/checkpoints" | sed "s|^$dir/checkpoints/||; s|/.*||" \
                 | sort -u); do
      [ "$old" = "$newest" ] || git rm -r -q --cached "$dir/checkpoints/$old"
    done
  done
  if [ -f "$study/wall_times.log" ]; then git add -f "$study/wall_times.log"; fi
done
git status --short study/runs | sed -n 1,20p
