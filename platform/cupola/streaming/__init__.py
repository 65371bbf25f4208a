"""Near-real-time features: Kafka events applied to the online store by Ray actors with exact window state,
landed offline under each group's source for builds and backfills (see `worker` and `processor`)."""
