#!/usr/bin/env python
"""Train (SHAPO-)PPO/TRPO-Lagrangian: a thin wrapper over `shapo-train` (see --help)."""

from shapo_jax.training.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
