#!/usr/bin/env bash
# Throughput, compile time and peak memory of SafetyPointGoal1 at 4,096-65,536 envs on this
# machine's accelerator (GPU, TPU, or the CPU as fallback), as a Markdown table for
# BENCHMARKS.md; each configuration in its own subprocess with a timeout, the whole run within
# --budget seconds (default 480). Options: scripts/bench_accelerator.py --help.
#
#   scripts/bench_accelerator.sh --out runs/bench_accelerator.md
#   scripts/bench_accelerator.sh --env TinyHazardNav --num-envs 64 128 --out /tmp/bench.md
#
# PYTHON selects the interpreter (default: the repository's .venv, else python3).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-$here/../.venv/bin/python}"
if [ ! -x "$python" ]; then
    python="$(command -v python3)"
fi
export BENCH_ACCELERATOR_COMMAND="scripts/bench_accelerator.sh"
exec "$python" "$here/bench_accelerator.py" "$@"
