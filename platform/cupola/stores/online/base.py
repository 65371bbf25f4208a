"""The online store interface: latest feature values per entity, read in one call at serving time.

Backends are chosen by the `backend` setting and imported lazily (the SQLite one is
embedded and the default; a Cassandra one implements the same interface), so a backend's
driver is needed only when it is chosen.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pandas as pd

from cupola.config import Settings
from cupola.specs.feature_group import FeatureGroupSpec
from cupola.stores import open_store

EntityKey = tuple[Any, ...]


def encode_entity_key(values: Sequence[Any]) -> str:
    """A stable text key for an entity: the JSON list of its key values, ints as ints, the rest as text."""
    return json.dumps(
        [int(v) if isinstance(v, int) or hasattr(v, "__index__") else str(v) for v in values], separators=(",", ":")
    )


def json_value(value: Any) -> Any:
    """A feature value as JSON stores it: NaN becomes null, numpy scalars become Python ones."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item"):
        return json_value(value.item())
    return value


@dataclass(frozen=True)
class OnlineRow:
    """One entity's latest values in one feature group, and the event time they are as of."""

    event_time: pd.Timestamp
    values: dict[str, Any]


class OnlineStore(ABC):
    """Latest value per (feature group, entity). Implementations must be safe to reuse across calls."""

    # Whether a read can wait on a network round trip or another process: a Serve replica then runs the lookup in
    # a store thread, off the event loop that answers requests. A backend whose reads never wait says False.
    reads_can_wait: ClassVar[bool] = True

    @abstractmethod
    def write(self, group: FeatureGroupSpec, rows: pd.DataFrame) -> int:
        """Upsert rows holding the group's entity keys, event time and features.

        A stored row is replaced only by a row with the same or a later event time, so
        replaying an older materialization never moves values back in time. Returns the
        number of rows offered.
        """

    @abstractmethod
    def read(
        self, group: FeatureGroupSpec, entity_keys: Sequence[EntityKey], features: Sequence[str]
    ) -> list[OnlineRow | None]:
        """Values of `features` for each entity key (a tuple in `group.entities` order), in order; None where absent."""

    def read_groups(
        self, lookups: Sequence[tuple[FeatureGroupSpec, Sequence[EntityKey], Sequence[str]]]
    ) -> list[list[OnlineRow | None]]:
        """`read` for several groups in one call (a prediction needing two groups); backends with network
        round trips run them concurrently."""
        return [self.read(group, keys, features) for group, keys, features in lookups]

    @abstractmethod
    def delete_group(self, group: str) -> None:
        """Forget every row of a feature group."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""


def create_online_store(settings: Settings) -> OnlineStore:
    """The configured backend's online store (the stores registry picks it and imports its module only now)."""
    return open_store("online", settings)
