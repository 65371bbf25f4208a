"""Evaluation: metrics, charts as data, feature importance and distributions for every model version."""
