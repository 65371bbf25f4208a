"""The library deployment: `cupola.load_model(name, "production")` predicts in-process, without Ray or Serve."""

from __future__ import annotations

from cupola.config import Settings
from cupola.features.offline_store import OfflineStore
from cupola.features.registry import open_registry
from cupola.serving.predictor import Predictor
from cupola.stores.datalake import Datalake
from cupola.stores.models import ArtifactStore, ModelRepository, create_repository
from cupola.stores.online.base import create_online_store


def load_predictor(
    settings: Settings, repository: ModelRepository, name: str, version_or_alias: int | str
) -> Predictor:
    """A version with its online-store lookups wired in when the spec reads the feature store."""
    version = repository.resolve(name, version_or_alias)
    datalake = Datalake.from_settings(settings)
    store_features = version.model_spec().store_features()
    groups, online = [], None
    if store_features:
        groups = open_registry(settings, OfflineStore(datalake)).resolve(store_features)
        online = create_online_store(settings)
    return Predictor.from_version(version, ArtifactStore(datalake), online, groups)


def load_model(name: str, version: int | str = "production", settings: Settings | None = None) -> Predictor:
    """Load a model version (number, alias or `latest`) for in-process prediction:

    >>> model = cupola.load_model("delivery_minutes", "production")
    >>> model.predict_records([{"distance_km": 2.5, "basket_size": 2, "order_ts": "2026-01-05T12:30:00Z",
    ...                         "city": "lima", "restaurant_id": 17}]).values
    """
    settings = settings or Settings.load()
    repository = create_repository(settings)
    try:
        return load_predictor(settings, repository, name, version)
    finally:
        repository.close()
