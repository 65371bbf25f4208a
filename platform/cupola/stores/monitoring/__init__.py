"""The monitoring store: prediction log, outcomes, replicas' serving counters, live-metric history."""
