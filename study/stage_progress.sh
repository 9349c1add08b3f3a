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
    git add -f "$dir/config.json" "$dir/metrics.jsonl"
    [ -d "$dir/tensorboard" ] && git add -f "$dir/tensorboard"
    [ -f "$dir/done" ] && git add -f "$dir/done"
    newest=$(find "$dir/checkpoints" -mindepth 1 -maxdepth 1 -type d -regex '.*/[0-9]+' \
             -printf '%f\n' 2>/dev/null | sort -n | tail -1)
    [ -n "$newest" ] || continue
    git add -f "$dir/checkpoints/$newest"
    for old in $(git ls-files "$dir/checkpoints" | cut -d/ -f6 | sort -u); do
      [ "$old" = "$newest" ] || git rm -r -q --cached "$dir/checkpoints/$old"
    done
  done
  [ -f "$study/wall_times.log" ] && git add -f "$study/wall_times.log"
done
git status --short study/runs | head -20
