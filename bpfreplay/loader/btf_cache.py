"""A cache of the vmlinux BTF index (decode/btf_lazy.py), so that a CO-RE load on a
kernel seen before skips even the one pass over its ~130,000 types.

Where: ``$XDG_CACHE_HOME/bpfreplay`` (else ``~/.cache/bpfreplay``), a directory of mode
0700; ``BPFREPLAY_CACHE`` names another directory, and set empty turns the cache off.
One file per BTF blob, named by its size and BLAKE2b digest: a changed kernel has other
bytes, hence another name, and is never answered by an old index.

A cache file is trusted as little as a trace file: it is opened with O_NOFOLLOW and
used only if it is a regular file owned by us and writable by nobody else, in a
directory of the same kind; its header must name the same blob (size and digest), its
payload must have the digest its header states, and its arrays must describe the blob
(one offset per type, increasing, inside the type section; ids in range). Anything else
is a miss, silently: the index is built from the blob and the file written again. A
hostile file that passes all of that can at worst make lookups find the wrong record,
which decode_type() still bounds-checks; it cannot make us read outside the blob.
Files are written mode 0600 under a temporary name and renamed into place.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
from array import array
from pathlib import Path

from bpfreplay.decode.btf_lazy import LazyBtf, NameIndex

_MAGIC = b"BPFRBTFI"
_VERSION = 1
# magic, version, blob size, blob digest, types, names, payload digest
_HEADER = struct.Struct("<8sIQ32sII32s")
_CACHE_ENV = "BPFREPLAY_CACHE"


def cache_dir() -> Path | None:
    configured = os.environ.get(_CACHE_ENV)
    if configured is not None:
        return Path(configured) if configured else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "bpfreplay"


def load_vmlinux_index(data: bytes | memoryview, keep: object = None) -> LazyBtf:
    """LazyBtf over ``data``, its index from the cache when a valid entry exists, else
    built and written to the cache."""
    directory = cache_dir()
    if directory is None:
        return LazyBtf(data, keep=keep)
    digest = hashlib.blake2b(data, digest_size=32).digest()
    path = directory / f"vmlinux-{len(data)}-{digest.hex()[:32]}.idx"
    index = _read(path, len(data), digest)
    if index is not None:
        try:
            return LazyBtf(data, keep=keep, index=index)
        except ValueError:  # arrays that do not describe this blob
            pass
    btf = LazyBtf(data, keep=keep)
    _write(directory, path, len(data), digest, btf.name_index())
    return btf


def _private_dir(directory: Path, create: bool) -> bool:
    try:
        if create:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(directory)
    except OSError:
        return False
    return (stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid()
            and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def _read(path: Path, blob_size: int, blob_digest: bytes) -> NameIndex | None:
    if not _private_dir(path.parent, create=False):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if (not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid()
                or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)):
            return None
        with os.fdopen(os.dup(fd), "rb") as f:
            raw = f.read()
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(raw) < _HEADER.size:
        return None
    magic, version, size, digest, types, names, payload_digest = _HEADER.unpack_from(raw)
    payload = raw[_HEADER.size:]
    if (magic != _MAGIC or version != _VERSION or size != blob_size
            or digest != blob_digest or len(payload) != 4 * (types + 2 * names)
            or hashlib.blake2b(payload, digest_size=32).digest() != payload_digest):
        return None
    offsets, name_offs, ids = array("I"), array("I"), array("I")
    offsets.frombytes(payload[:4 * types])
    name_offs.frombytes(payload[4 * types:4 * (types + names)])
    ids.frombytes(payload[4 * (types + names):])
    return NameIndex(offsets, name_offs, ids)


def _write(directory: Path, path: Path, blob_size: int, blob_digest: bytes,
           index: NameIndex) -> None:
    """Best effort: a cache that cannot be written is no error."""
    if not _private_dir(directory, create=True):
        return
    payload = index.offsets.tobytes() + index.name_offs.tobytes() + index.ids.tobytes()
    header = _HEADER.pack(_MAGIC, _VERSION, blob_size, blob_digest, len(index.offsets),
                          len(index.name_offs),
                          hashlib.blake2b(payload, digest_size=32).digest())
    temporary = directory / f".{path.name}.{os.getpid()}.tmp"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(header + payload)
        os.rename(temporary, path)
    except OSError:
        try:
            os.unlink(temporary)
        except OSError:
            pass
