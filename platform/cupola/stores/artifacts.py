"""Model artifacts in the datalake: immutable files in the framework's own format, with sha256.

Artifacts are never pickled. Every load recomputes the sha256 and refuses a file that does
not match its record, so a tampered or truncated model is never served.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

from cupola.errors import ServerFault
from cupola.stores.datalake import Datalake


class ArtifactIntegrityError(ServerFault):
    """An artifact's bytes do not match the checksum recorded with its model version."""


@dataclass(frozen=True)
class ArtifactRef:
    """Where one learned model lives and how to check it."""

    uri: str
    sha256: str
    size: int
    format: str

    def to_dict(self) -> dict:
        return asdict(self)


class ArtifactStore:
    """Writes each artifact once under `models/<model>/<run id>/`; reads verify the checksum."""

    def __init__(self, datalake: Datalake) -> None:
        self.datalake = datalake

    def put(self, model: str, run_id: str, filename: str, data: bytes, format: str) -> ArtifactRef:
        relative = f"models/{model}/{run_id}/{filename}"
        if self.datalake.exists(relative):
            raise FileExistsError(f"artifact {self.datalake.uri(relative)} already exists; artifacts are immutable")
        path = self.datalake.path(relative)
        self.datalake.filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with self.datalake.filesystem.open_output_stream(path) as stream:
            stream.write(data)
        return ArtifactRef(self.datalake.uri(relative), hashlib.sha256(data).hexdigest(), len(data), format)

    def get(self, ref: ArtifactRef) -> bytes:
        with self.datalake.filesystem.open_input_stream(self.datalake.path(ref.uri)) as stream:
            data = stream.read()
        actual = hashlib.sha256(data).hexdigest()
        if actual != ref.sha256:
            raise ArtifactIntegrityError(
                f"artifact {ref.uri} is corrupted or was modified: sha256 {actual[:16]}… does not match the recorded "
                f"{ref.sha256[:16]}…; refusing to load it — retrain or restore the file from backup"
            )
        return data
