"""The datalake: every file cupola reads or writes goes through one pyarrow filesystem.

The root is a URI (file://, s3://, hdfs://, gs://), so the same code runs on a laptop and on
a cluster whose nodes share an object store. Paths handed around between Ray tasks are the
root URI plus a relative path, never open handles, so any node can resolve them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs as pafs


@dataclass(frozen=True)
class Datalake:
    """A pyarrow filesystem rooted at `root_uri`."""

    root_uri: str
    filesystem: pafs.FileSystem = field(init=False, repr=False, compare=False)
    root_path: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        filesystem, root_path = pafs.FileSystem.from_uri(self.root_uri)
        object.__setattr__(self, "filesystem", filesystem)
        object.__setattr__(self, "root_path", root_path.rstrip("/"))

    def __reduce__(self) -> tuple[type["Datalake"], tuple[str]]:
        """Ship only the URI to Ray workers; each rebuilds its own filesystem client."""
        return (Datalake, (self.root_uri,))

    def path(self, relative: str) -> str:
        """Filesystem path for a path relative to the root; a full URI of the same store passes through."""
        if "://" in relative:
            _, path = pafs.FileSystem.from_uri(relative)
            return path
        return f"{self.root_path}/{relative.strip('/')}" if relative else self.root_path

    def uri(self, relative: str) -> str:
        return relative if "://" in relative else f"{self.root_uri.rstrip('/')}/{relative.strip('/')}"

    def exists(self, relative: str) -> bool:
        return self.filesystem.get_file_info(self.path(relative)).type != pafs.FileType.NotFound

    def list_dirs(self, relative: str) -> list[str]:
        """Names of the sub-folders of a folder (empty when it does not exist)."""
        if not self.exists(relative):
            return []
        infos = self.filesystem.get_file_info(pafs.FileSelector(self.path(relative)))
        return sorted(info.base_name for info in infos if info.type == pafs.FileType.Directory)

    def list_files(self, relative: str, recursive: bool = False) -> list[str]:
        """Full filesystem paths of files under a folder, skipping hidden and `_`-prefixed names."""
        if not self.exists(relative):
            return []
        selector = pafs.FileSelector(self.path(relative), recursive=recursive)
        return sorted(
            info.path
            for info in self.filesystem.get_file_info(selector)
            if info.type == pafs.FileType.File and not info.base_name.startswith(("_", "."))
        )

    def delete_dir(self, relative: str) -> None:
        if self.exists(relative):
            self.filesystem.delete_dir(self.path(relative))

    def move(self, source: str, destination: str) -> None:
        parent = self.path(destination).rsplit("/", 1)[0]
        self.filesystem.create_dir(parent, recursive=True)
        self.filesystem.move(self.path(source), self.path(destination))

    def write_json(self, relative: str, document: Any) -> None:
        """Write JSON through a temporary file and a move, so readers never see half a document."""
        target = self.path(relative)
        self.filesystem.create_dir(target.rsplit("/", 1)[0], recursive=True)
        temporary = f"{target}.tmp"
        with self.filesystem.open_output_stream(temporary) as stream:
            stream.write(json.dumps(document, indent=2, sort_keys=True, default=str).encode())
        self.filesystem.move(temporary, target)

    def read_json(self, relative: str) -> Any | None:
        if not self.exists(relative):
            return None
        with self.filesystem.open_input_stream(self.path(relative)) as stream:
            return json.loads(stream.read().decode())
