"""Training runs: id, status, progress, resumable state and log lines."""

from cupola.stores.runs.base import TrainingRun, TrainingRuns

__all__ = ["TrainingRun", "TrainingRuns"]
