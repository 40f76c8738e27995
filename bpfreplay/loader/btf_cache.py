"""A cache of the vmlinux BTF index (decode/btf_lazy.py), so that a CO-RE load on a
kernel seen before skips even the one pass over its ~130,000 types.

Where: ``$XDG_CACHE_HOME/bpfreplay`` (else ``~/.cache/bpfreplay``), a directory of mode
0700; ``BPFREPLAY_CACHE`` names another directory, and set empty turns the cache off.
One file per BTF blob, named by its size and BLAKE2b digest: a changed kernel has other
bytes, hence another name, and is never answered by an old index.

Hashing the ~5.5 MB blob costs more than the rest of a warm lookup (~10 ms of ~14), so
for the running kernel's own BTF (sysfs, which cannot change until the next boot) a
small note ``vmlinux-SIZE.boot`` remembers the digest found in this boot (the kernel's
random boot_id, new at every boot and kexec): while the boot_id is the same the blob is
not hashed again. A blob read from any other file is hashed every time.

A cache file is trusted as little as a trace file: it is opened with O_NOFOLLOW and
used only if it is a regular file owned by us and writable by nobody else, in a
directory of the same kind; its header must name the same blob (size and digest), its
payload must have the CRC-32 its header states (damage on disk), and its arrays must
describe the blob (one offset per type, increasing, inside the type section; ids in
range). Anything else is a miss, silently: the index is built from the blob and the file
written again. A hostile file that passes all of that can at worst make lookups find the
wrong record, which decode_type() still bounds-checks; it cannot make us read outside
the blob. Files are written mode 0600 under a temporary name and renamed into place.
"""

from __future__ import annotations

import os
import stat
import struct
import zlib
from pathlib import Path

from bpfreplay.decode.btf_lazy import LazyBtf, NameIndex

_MAGIC = b"BPFRBTFI"
_VERSION = 2
# magic, version, blob size, blob digest, types, names, payload CRC-32
_HEADER = struct.Struct("<8sIQ32sIII")
_NOTE_MAGIC = b"BPFRBOOT"
# magic, boot_id (its 36 characters), blob size, blob digest
_NOTE = struct.Struct("<8s36sQ32s")
_CACHE_ENV = "BPFREPLAY_CACHE"
_BOOT_ID = "/proc/sys/kernel/random/boot_id"


def cache_dir() -> Path | None:
    configured = os.environ.get(_CACHE_ENV)
    if configured is not None:
        return Path(configured) if configured else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "bpfreplay"


def load_vmlinux_index(data: bytes | memoryview, keep: object = None, *,
                       running_kernel: bool = False) -> LazyBtf:
    """LazyBtf over ``data``, its index from the cache when a valid entry exists, else
    built and written to the cache. ``running_kernel``: ``data`` is this boot's sysfs
    vmlinux BTF (its digest may come from this boot's note)."""
    directory = cache_dir()
    if directory is None:
        return LazyBtf(data, keep=keep)
    boot_id = _boot_id() if running_kernel else None
    digest = _noted_digest(directory, boot_id, len(data)) if boot_id else None
    if digest is None:
        import hashlib  # (~4 ms to import, with OpenSSL: only when a blob is hashed)

        digest = hashlib.blake2b(data, digest_size=32).digest()
        if boot_id:
            _write_file(directory, _note_path(directory, len(data)),
                        _NOTE.pack(_NOTE_MAGIC, boot_id, len(data), digest))
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


def _boot_id() -> bytes | None:
    try:
        with open(_BOOT_ID, "rb") as f:
            value = f.read(64).strip()
    except OSError:
        return None
    return value if len(value) == 36 else None


def _note_path(directory: Path, blob_size: int) -> Path:
    return directory / f"vmlinux-{blob_size}.boot"


def _noted_digest(directory: Path, boot_id: bytes, blob_size: int) -> bytes | None:
    """The digest this boot's note gives the running kernel's blob of ``blob_size``
    bytes; None without a valid note of this boot."""
    raw = _read_private(_note_path(directory, blob_size))
    if raw is None or len(raw) != _NOTE.size:
        return None
    magic, noted_boot, size, digest = _NOTE.unpack(raw)
    if magic != _NOTE_MAGIC or noted_boot != boot_id or size != blob_size:
        return None
    return digest


def _private_dir(directory: Path, create: bool) -> bool:
    try:
        if create:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(directory)
    except OSError:
        return False
    return (stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid()
            and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def _read_private(path: Path) -> bytearray | None:
    """The bytes of ``path`` if it is a regular file of ours that only we may write, in
    a directory of the same kind (no symlink followed); else None."""
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
        raw = bytearray(st.st_size)
        got = os.readv(fd, [raw])
    except OSError:
        return None
    finally:
        os.close(fd)
    return raw if got == len(raw) else None


def _read(path: Path, blob_size: int, blob_digest: bytes) -> NameIndex | None:
    raw = _read_private(path)
    if raw is None or len(raw) < _HEADER.size:
        return None
    magic, version, size, digest, types, names, payload_crc = _HEADER.unpack_from(raw)
    payload = memoryview(raw)[_HEADER.size:]
    if (magic != _MAGIC or version != _VERSION or size != blob_size
            or digest != blob_digest or len(payload) != 4 * (types + 2 * names)
            or zlib.crc32(payload) != payload_crc):
        return None
    # Views of the file's bytes, not copies (~1.4 MB for vmlinux).
    words = payload.cast("I")
    return NameIndex(words[:types], words[types:types + names], words[types + names:])


def _write(directory: Path, path: Path, blob_size: int, blob_digest: bytes,
           index: NameIndex) -> None:
    payload = index.offsets.tobytes() + index.name_offs.tobytes() + index.ids.tobytes()
    header = _HEADER.pack(_MAGIC, _VERSION, blob_size, blob_digest, len(index.offsets),
                          len(index.name_offs), zlib.crc32(payload))
    _write_file(directory, path, header + payload)


def _write_file(directory: Path, path: Path, content: bytes) -> None:
    """Best effort: a cache that cannot be written is no error."""
    if not _private_dir(directory, create=True):
        return
    temporary = directory / f".{path.name}.{os.getpid()}.tmp"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.rename(temporary, path)
    except OSError:
        try:
            os.unlink(temporary)
        except OSError:
            pass
