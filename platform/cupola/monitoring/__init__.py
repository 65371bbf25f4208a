"""Monitoring: sampled prediction logging, outcomes, live accuracy and drift, Prometheus export.

sampler   (in each Serve replica) counters of every request; sampled rows buffered and shipped in the background
actor     one named, restartable Ray actor per model: persists sampled rows, recomputes live metrics
(the prediction log, outcomes, counters and live-metric history are stored by cupola.stores.monitoring)
live      live accuracy per window, version and partition; PSI drift against the training distributions
join      outcomes from label events in the datalake
exporter  the Prometheus collector behind GET /metrics
summary   what `cupola monitor` shows, with the breached alert limits
"""
