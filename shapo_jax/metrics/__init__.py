"""Stage 4 of the data flow: turning update metrics into log records, files and plots."""

from shapo_jax.metrics.loggers import RunLogger, metric_values, seed_run
from shapo_jax.metrics.plots import format_steps, plot_training
from shapo_jax.metrics.records import MetricsWriter, log_records, read_metrics
from shapo_jax.metrics.tensorboard import TensorBoardWriter
from shapo_jax.metrics.wandb_runs import WandbRuns, WandbSettings, import_wandb

__all__ = ["MetricsWriter", "RunLogger", "TensorBoardWriter", "WandbRuns", "WandbSettings",
           "format_steps", "import_wandb", "log_records", "metric_values", "plot_training",
           "read_metrics", "seed_run"]
