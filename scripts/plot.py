#!/usr/bin/env python
"""Learning curves and Pareto plots of a sweep: a thin wrapper over `shapo-plot` (see --help)."""

from shapo_jax.experiments.cli import plot_main

if __name__ == "__main__":
    raise SystemExit(plot_main())
