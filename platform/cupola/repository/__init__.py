"""The model repository: versioned, append-only model records, aliases, checksummed artifacts."""

from cupola.repository.artifacts import ArtifactIntegrityError, ArtifactRef, ArtifactStore
from cupola.repository.base import AliasConflict, AliasMove, ModelRepository, ModelVersion, NewModelVersion, create_repository

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
