"""The model repository: versioned, append-only model records, aliases, checksummed artifacts."""

from cupola.stores.artifacts import ArtifactIntegrityError, ArtifactRef, ArtifactStore
from cupola.stores.models.base import (
    AliasConflict,
    AliasMove,
    ModelRepository,
    ModelVersion,
    NewModelVersion,
    create_repository,
)

__all__ = [
    "AliasConflict",
    "AliasMove",
    "ArtifactIntegrityError",
    "ArtifactRef",
    "ArtifactStore",
    "ModelRepository",
    "ModelVersion",
    "NewModelVersion",
    "create_repository",
]
