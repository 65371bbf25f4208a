"""Job attempts: every Ray job the control plane submitted for a run, with who, when and why."""

from cupola.stores.jobs.base import JobAttempts, SubmittedJob

__all__ = ["JobAttempts", "SubmittedJob"]
