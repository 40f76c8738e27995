"""Trace reader: header check, streaming records, tolerance of a truncated tail."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import msgpack

from bpfreplay.errors import TraceFormatError
from bpfreplay.trace.schema import FORMAT_NAME, FORMAT_VERSION

# Large enough for a 16 MiB verifier log inside a record, small enough to refuse nonsense.
_MAX_BUFFER = 1 << 30


@dataclass
class Trace:
    """An open trace file. Iterate over ``records()`` once; ``truncated`` tells,
    after the iteration, whether the file ended inside a record."""

    path: str
    header: dict[str, Any]
    _file: BinaryIO
    _unpacker: msgpack.Unpacker
    truncated: bool = False
    trailing_bytes: int = 0
    _size: int = field(default=0)

    def records(self) -> Iterator[dict[str, Any]]:
        try:
            for obj in self._unpacker:
                if not isinstance(obj, dict) or "type" not in obj:
                    raise TraceFormatError(f"reading {self.path}: record is not a map with a type")
                yield obj
        except (ValueError, msgpack.UnpackException) as e:
            raise TraceFormatError(f"reading {self.path}: corrupt record: {e}") from e
        consumed = self._unpacker.tell()
        if consumed < self._size:
            self.truncated = True
            self.trailing_bytes = self._size - consumed

    def calls(self) -> Iterator[dict[str, Any]]:
        return (r for r in self.records() if r["type"] == "call")

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Trace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_trace(path: str) -> Trace:
    """Open a trace file and check its header; records are read lazily."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - owned by the returned Trace
    except OSError as e:
        raise TraceFormatError(f"opening trace file {path}: {e.strerror}") from e
    size = os.fstat(f.fileno()).st_size
    unpacker = msgpack.Unpacker(f, raw=False, strict_map_key=False, max_buffer_size=_MAX_BUFFER)
    try:
        header = next(unpacker)
    except StopIteration:
        f.close()
        raise TraceFormatError(f"reading {path}: empty or truncated before the header") from None
    except (ValueError, msgpack.UnpackException) as e:
        f.close()
        raise TraceFormatError(f"reading {path}: not a bpfreplay trace ({e})") from e
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        f.close()
        raise TraceFormatError(f"reading {path}: not a bpfreplay trace (no '{FORMAT_NAME}' header)")
    version = header.get("version")
    if version != FORMAT_VERSION:
        f.close()
        raise TraceFormatError(
            f"reading {path}: trace format version {version!r}, this bpfreplay reads version "
            f"{FORMAT_VERSION}"
        )
    return Trace(path=path, header=header, _file=f, _unpacker=unpacker, _size=size)
