"""A model version record as JSON text, the same on every backend."""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import datetime
from typing import Any

from cupola.stores.artifacts import ArtifactRef
from cupola.stores.models.base import ModelVersion, NewModelVersion


def encode_record(draft: NewModelVersion) -> str:
    document = {f.name: getattr(draft, f.name) for f in fields(NewModelVersion)}
    document["artifacts"] = {key: ref.to_dict() for key, ref in draft.artifacts.items()}
    return json.dumps(document, default=lambda value: value.isoformat() if isinstance(value, datetime) else str(value))


def decode_record(version: int, registered_at: str, record: str) -> ModelVersion:
    document: dict[str, Any] = json.loads(record)
    document["artifacts"] = {key: ArtifactRef(**ref) for key, ref in document["artifacts"].items()}
    for key in ("training_started_at", "training_ended_at"):
        document[key] = datetime.fromisoformat(document[key])
    return ModelVersion(**document, version=version, registered_at=datetime.fromisoformat(registered_at))
