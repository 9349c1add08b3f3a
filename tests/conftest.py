"""Tests run in-process on the CPU as one XLA device: JAX starts here, before any test calls a
CLI entry point in-process (whose `--cpu-devices auto` would otherwise split the CPU of the
whole test process). Tests of several devices start their own processes."""

import jax

jax.devices()
