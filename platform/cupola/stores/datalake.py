"""The datalake: every file cupola reads or writes goes through one pyarrow filesystem.

The root is a URI (file://, s3://, hdfs://, gs://), so the same code runs on a laptop and on
a cluster whose nodes share an object store. Paths handed around between Ray tasks are the
root URI plus a relative path, never open handles, so any node can resolve them. An s3://
root may name an S3-compatible server (`s3_endpoint_url`); credentials come from the node's
standard AWS chain, so nothing secret travels with a Datalake.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow.dataset as pds
import pyarrow.fs as pafs

if TYPE_CHECKING:
    from cupola.config import Settings


def open_filesystem(root_uri: str, s3_endpoint_url: str = "") -> tuple[pafs.FileSystem, str]:
    """pyarrow's filesystem and path for a URI; an s3:// URI goes to `s3_endpoint_url` when one is given."""
    if s3_endpoint_url and root_uri.startswith("s3://"):
        filesystem = pafs.S3FileSystem(
            endpoint_override=s3_endpoint_url, region=os.environ.get("AWS_REGION", "us-east-1")
        )
        return filesystem, root_uri.removeprefix("s3://")
    return pafs.FileSystem.from_uri(root_uri)


@dataclass(frozen=True)
class Datalake:
    """A pyarrow filesystem rooted at `root_uri`."""

    root_uri: str
    s3_endpoint_url: str = ""
    filesystem: pafs.FileSystem = field(init=False, repr=False, compare=False)
    root_path: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        filesystem, root_path = open_filesystem(self.root_uri, self.s3_endpoint_url)
        object.__setattr__(self, "filesystem", filesystem)
        object.__setattr__(self, "root_path", root_path.rstrip("/"))

    @classmethod
    def from_settings(cls, settings: "Settings") -> "Datalake":
        return cls(settings.data_root_uri, settings.s3_endpoint_url)

    def __reduce__(self) -> tuple[type["Datalake"], tuple[str, str]]:
        """Ship only the URI and endpoint to Ray workers; each rebuilds its own filesystem client."""
        return (Datalake, (self.root_uri, self.s3_endpoint_url))

    def path(self, relative: str) -> str:
        """Filesystem path for a path relative to the root; a full URI of the same store passes through (one under
        the root without building a filesystem client: on S3 that is an AWS client per call)."""
        if "://" in relative:
            root = self.root_uri.rstrip("/")
            if relative == root or relative.startswith(f"{root}/"):
                return self.root_path + relative[len(root) :]
            _, path = open_filesystem(relative, self.s3_endpoint_url)
            return path
        return f"{self.root_path}/{relative.strip('/')}" if relative else self.root_path

    def locate(self, uri: str) -> tuple[pafs.FileSystem, str]:
        """Filesystem and path for any URI: this datalake's client (and S3 endpoint) for its own scheme,
        pyarrow's default client for another (a local file:// input beside an s3:// datalake)."""
        if uri.split("://", 1)[0] == self.root_uri.split("://", 1)[0]:
            return self.filesystem, self.path(uri)
        return pafs.FileSystem.from_uri(uri)

    def parquet_dataset(self, location: str, **options: Any) -> pds.Dataset:
        """The Parquet dataset at a URI or a path relative to the root, read through `locate`'s client."""
        filesystem, path = self.locate(self.uri(location))
        return pds.dataset(path, filesystem=filesystem, format="parquet", **options)

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
        """Move a file or a folder. An object store cannot rename a folder (S3 has no folders, only keys), so
        there a folder moves file by file: a reader may briefly see part of it in both places."""
        source_path, destination_path = self.path(source), self.path(destination)
        self.filesystem.create_dir(destination_path.rsplit("/", 1)[0], recursive=True)
        if (
            isinstance(self.filesystem, pafs.LocalFileSystem)
            or self.filesystem.get_file_info(source_path).type == pafs.FileType.File
        ):
            self.filesystem.move(source_path, destination_path)
            return
        for info in self.filesystem.get_file_info(pafs.FileSelector(source_path, recursive=True)):
            if info.type == pafs.FileType.File:
                self.filesystem.move(info.path, destination_path + info.path.removeprefix(source_path))
        self.filesystem.delete_dir(source_path)

    def write_json(self, relative: str, document: Any) -> None:
        self.write_text(relative, json.dumps(document, indent=2, sort_keys=True, default=str))

    def read_json(self, relative: str) -> Any | None:
        text = self.read_text(relative)
        return json.loads(text) if text is not None else None

    def write_text(self, relative: str, text: str) -> None:
        """Write a whole text file through a temporary file and a move, so readers never see half of it."""
        self.write_bytes(relative, text.encode())

    def read_text(self, relative: str) -> str | None:
        """A whole text file, None when it does not exist."""
        data = self.read_bytes(relative)
        return data.decode() if data is not None else None

    def write_bytes(self, relative: str, data: bytes) -> None:
        """Write a whole file through a temporary file and a move, so readers never see half of it."""
        target = self.path(relative)
        self.filesystem.create_dir(target.rsplit("/", 1)[0], recursive=True)
        temporary = f"{target}.tmp"
        with self.filesystem.open_output_stream(temporary) as stream:
            stream.write(data)
        self.filesystem.move(temporary, target)

    def read_bytes(self, relative: str) -> bytes | None:
        """A whole file, None when it does not exist."""
        if not self.exists(relative):
            return None
        with self.filesystem.open_input_stream(self.path(relative)) as stream:
            return bytes(stream.read())
