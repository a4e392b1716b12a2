"""Calyx's file formats: the shared chunked container and the ``.calyx`` instrument format."""

from __future__ import annotations

from calyx.format.container import (
    ChunkInfo,
    ContainerReader,
    container_bytes,
    pack_array,
    read_container_bytes,
    unpack_array,
    write_container,
)

__all__ = [
    "ChunkInfo",
    "ContainerReader",
    "container_bytes",
    "pack_array",
    "read_container_bytes",
    "unpack_array",
    "write_container",
]
