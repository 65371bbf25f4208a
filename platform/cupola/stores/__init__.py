"""Every record store behind one registry: an interface per domain, an SQLite and a Cassandra implementation.

`open_store(domain, settings)` picks the implementation by `settings.backend` and imports its
module only then, so `cassandra-driver` is needed only when Cassandra is chosen (Feast's
`ONLINE_STORE_CLASS_FOR_TYPE`, MLflow's store registry). Each interface has one contract
suite in `tests/` run against both backends.
"""

from cupola.stores.registry import STORE_DOMAINS, open_store

__all__ = ["STORE_DOMAINS", "open_store"]
