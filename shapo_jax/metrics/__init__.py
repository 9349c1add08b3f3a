"""Stage 4 of the data flow: turning update metrics into log records, files and plots."""

from shapo_jax.metrics.plots import plot_training
from shapo_jax.metrics.records import MetricsWriter, log_records, read_metrics

__all__ = ["MetricsWriter", "log_records", "plot_training", "read_metrics"]
