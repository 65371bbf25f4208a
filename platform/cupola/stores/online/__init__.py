"""The online store: latest feature values per entity, read in one call at serving time."""

from cupola.stores.online.base import (
    EntityKey,
    OnlineRow,
    OnlineStore,
    create_online_store,
    encode_entity_key,
    json_value,
)

__all__ = ["EntityKey", "OnlineRow", "OnlineStore", "create_online_store", "encode_entity_key", "json_value"]
