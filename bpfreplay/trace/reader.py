"""Trace reader: header check, streaming records each checked against the format
(``schema.record_problem``), tolerance of a truncated tail, exact offsets."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import msgpack

from bpfreplay.errors import TraceFormatError
from bpfreplay.trace.schema import (
    FORMAT_NAME,
    READABLE_VERSIONS,
    header_problem,
    record_problem,
)

# Large enough for a 16 MiB verifier log inside a record, small enough to refuse nonsense.
_MAX_BUFFER = 1 << 30


class _Maps:
    """msgpack's ``object_pairs_hook``: a map whose keys cannot be dict keys (a map or a
    list as a key) becomes an empty map and is noted, so that the object around it is
    read to its end and the next one starts where it should."""

    def __init__(self) -> None:
        self.bad_key = False

    def __call__(self, pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
        try:
            return dict(pairs)
        except TypeError:
            self.bad_key = True
            return {}


def _ext(code: int, data: bytes) -> msgpack.ExtType:
    """Every ext type (the timestamp one included) as it is: no record has one."""
    return msgpack.ExtType(code, data)


@dataclass
class Trace:
    """An open trace file. Iterate over ``records()`` once. After the iteration,
    ``truncated`` tells whether the file ended inside a record (or in the zero bytes a
    killed writer had reserved: ``zero_tail``), ``complete_end`` is the
    offset just past the last complete record and ``trailing_bytes`` the bytes after it.

    A record that is not of the format (``schema.record_problem``) raises
    ``TraceFormatError`` (``record #N at byte B: what``; the header is #0), unless
    ``skip_bad``: then it is left out, its message is in ``problems`` and goes to
    ``on_problem``. Bytes that are not msgpack at all always raise: nothing after
    them can be found."""

    path: str
    header: dict[str, Any]
    _file: BinaryIO
    _unpacker: msgpack.Unpacker
    _maps: _Maps
    header_end: int
    skip_bad: bool = False
    on_problem: Callable[[str], None] | None = None
    truncated: bool = False
    zero_tail: bool = False  # the bytes after the records begin with a zero byte
    trailing_bytes: int = 0
    complete_end: int = 0
    problems: list[str] = field(default_factory=list)

    def records(self) -> Iterator[dict[str, Any]]:
        start = self.header_end
        number = 0
        unpacker, maps = self._unpacker, self._maps
        while True:
            number += 1
            maps.bad_key = False
            try:
                obj = unpacker.unpack()
            except msgpack.OutOfData:
                break
            except (ValueError, TypeError, msgpack.UnpackException) as e:
                raise TraceFormatError(
                    f"reading {self.path}: record #{number} at byte {start}: not msgpack "
                    f"({type(e).__name__}); nothing after it can be read") from e
            end = unpacker.tell()
            if obj == 0 and end == start + 1 and type(obj) is int:
                self.zero_tail = True  # space the writer reserved, never written (docs)
                break
            problem = "a map with a key that is a map or a list" if maps.bad_key \
                else record_problem(obj)
            if problem is not None:
                message = f"record #{number} at byte {start}: {problem}"
                if not self.skip_bad:
                    raise TraceFormatError(
                        f"reading {self.path}: {message}: not a call, process or exit "
                        "record of the format (docs/trace-format.md)")
                self.problems.append(message)
                if self.on_problem is not None:
                    self.on_problem(message)
            else:
                yield obj
            start = end
        self.complete_end = start
        self.trailing_bytes = self._bytes_after(start)
        self.truncated = self.trailing_bytes > 0

    def _bytes_after(self, offset: int) -> int:
        """The bytes of the file past ``offset``, read to its end: the size of a regular
        file, else what the unpacker took in (a pipe has been read to its end)."""
        import stat

        st = os.fstat(self._file.fileno())
        if stat.S_ISREG(st.st_mode):
            return max(st.st_size - offset, 0)
        return max(self._unpacker.tell() - offset, 0)

    def calls(self) -> Iterator[dict[str, Any]]:
        return (r for r in self.records() if r["type"] == "call")

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Trace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_trace(path: str, *, skip_bad: bool = False,
               on_problem: Callable[[str], None] | None = None) -> Trace:
    """Open a trace file and check its header; records are read lazily (see ``Trace``
    for ``skip_bad`` and ``on_problem``)."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - owned by the returned Trace
    except OSError as e:
        raise TraceFormatError(f"opening trace file {path}: {e.strerror}") from e
    try:
        return _open(path, f, skip_bad, on_problem)
    except BaseException:
        f.close()
        raise


def _open(path: str, f: BinaryIO, skip_bad: bool,
          on_problem: Callable[[str], None] | None) -> Trace:
    maps = _Maps()
    unpacker = msgpack.Unpacker(f, raw=False, strict_map_key=False,
                                max_buffer_size=_MAX_BUFFER, object_pairs_hook=maps,
                                ext_hook=_ext, unicode_errors="surrogateescape")
    try:
        header = unpacker.unpack()
    except msgpack.OutOfData:
        raise TraceFormatError(f"reading {path}: empty or truncated before the header") \
            from None
    except (ValueError, TypeError, msgpack.UnpackException) as e:
        raise TraceFormatError(f"reading {path}: not a bpfreplay trace "
                               f"({type(e).__name__})") from e
    if maps.bad_key or not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise TraceFormatError(f"reading {path}: not a bpfreplay trace (no '{FORMAT_NAME}' "
                               "header)")
    version = header.get("version")
    if type(version) is not int or version not in READABLE_VERSIONS:
        shown = version if type(version) is int else type(version).__name__
        readable = " and ".join(map(str, READABLE_VERSIONS))
        raise TraceFormatError(
            f"reading {path}: trace format version {shown}, this bpfreplay reads versions "
            f"{readable}")
    problem = header_problem(header)
    if problem is not None:
        raise TraceFormatError(f"reading {path}: header (record #0 at byte 0): {problem}")
    return Trace(path=path, header=header, _file=f, _unpacker=unpacker, _maps=maps,
                 header_end=unpacker.tell(), skip_bad=skip_bad, on_problem=on_problem)
