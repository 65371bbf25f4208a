"""Deployment records: which version a model's endpoint serves, with canary and shadow, and their history."""
