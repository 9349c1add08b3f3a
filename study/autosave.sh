#!/bin/bash
# Commit the 10M study's state every $AUTOSAVE_EVERY seconds (default one hour) while the
# process $1 (run_study_10m.sh) lives, so that a sitting cut off before it could stop the study
# loses at most that much of it: study/stage_progress.sh stages each run's config, metrics,
# `done` marker and newest checkpoint (older ones leave the index). A round where something
# outside study/runs is staged commits nothing (that work is someone else's to commit), as does
# one where another git command holds the index; both are reported and tried again at the next
# round, and the study goes on either way.
set -uo pipefail
cd "$(dirname "$0")/.."
watched=${1:?usage: autosave.sh PID-of-the-study}
every=${AUTOSAVE_EVERY:-3600}
while sleep "$every" && kill -0 "$watched" 2> /dev/null; do
  if [ -n "$(git diff --cached --name-only | grep -v '^study/runs/')" ]; then
    echo "$(date -u +%FT%TZ) autosave: other staged changes, not committing" >&2
  elif bash study/stage_progress.sh > /dev/null && ! git diff --cached --quiet; then
    newest=$(tail -q -n 1 study/runs/*/wall_times.log | sort | tail -1)  # ISO times sort
    git commit -q -m "Study: progress so far (autosave; last event: ${newest})" \
      || echo "$(date -u +%FT%TZ) autosave: commit failed, trying again later" >&2
  fi
done
