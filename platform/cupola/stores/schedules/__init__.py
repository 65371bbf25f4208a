"""Scheduler decisions: one per model and due time, with its reason."""

from cupola.stores.schedules.base import Decision, ScheduleDecisions

__all__ = ["Decision", "ScheduleDecisions"]
