#!/usr/bin/env python
"""Sweep algorithms x tasks x settings x seeds: a thin wrapper over `shapo-sweep` (see --help)."""

from shapo_jax.experiments.cli import sweep_main

if __name__ == "__main__":
    raise SystemExit(sweep_main())
