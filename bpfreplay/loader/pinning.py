"""Maps pinned by name (``__uint(pinning, LIBBPF_PIN_BY_NAME)``), as libbpf 1.1.2 pins
them.

At open, such a map gets the pin path ``<pin_root_path>/<map name>`` (the open option
``bpf_object_open_opts.pin_root_path``, /sys/fs/bpf by default). At load, before
creating it, libbpf looks for a map already pinned there: none (ENOENT), and the map is
created and then pinned (BPF_OBJ_PIN; the pin path's directory made first if missing);
one whose definition matches, and its fd is duplicated and used instead (no
BPF_MAP_CREATE, no initial contents, no new pin); one that does not match, and the load
fails. If the load fails later, the maps this load pinned (not the reused ones) are
unpinned again; closing a loaded object never unpins.

The BPF calls go through ``bpfreplay.sys`` like every other; the file system calls
around them (mkdir, statfs, unlink, the open("/") that reserves a close-on-exec fd
number) are no BPF calls and neither ``bpfreplay record`` nor the loader's own tracer
records them, for libbpf or for us.
"""

from __future__ import annotations

import errno as errno_codes
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bpfreplay import sys as bsys
from bpfreplay.errors import LoaderError
from bpfreplay.loader.bpfcalls import Attr, obj_info
from bpfreplay.recording import syscalls as nr
from bpfreplay.uapi import cmd_value

if TYPE_CHECKING:
    from bpfreplay.loader.kernel import LoadedMap, LoadedObject
    from bpfreplay.loader.spec import MapSpec

DEFAULT_PIN_ROOT = "/sys/fs/bpf"
LIBBPF_PIN_BY_NAME = 1
PATH_MAX = 4096
BPF_FS_MAGIC = 0xCAFE4A11

BPF_OBJ_PIN = cmd_value("BPF_OBJ_PIN")
BPF_OBJ_GET = cmd_value("BPF_OBJ_GET")
# libbpf 1.1.2's bpf_obj_pin()/bpf_obj_get_opts(): offsetofend(union bpf_attr,
# file_flags) (the kernel's later path_fd is not sent).
OBJ_PATH_ATTR_SIZE = 16
# sizeof(struct bpf_map_info) in libbpf 1.1.2's uapi: it ends with map_extra (the
# kernel's later hash and hash_size are not asked for).
MAP_INFO_SIZE = 88
O_CLOEXEC = os.O_CLOEXEC


# ------------------------------------------------------------------------ open


def build_pin_path(spec: MapSpec, pin_root_path: str | None) -> str | None:
    """build_map_pin_path() at open, for maps pinned by name: the root (None:
    /sys/fs/bpf) and bpf_map__name(), the map's full name (not the 15 bytes the kernel
    keeps), joined with one '/'. None for maps that are not pinned."""
    if spec.pinning != LIBBPF_PIN_BY_NAME:
        return None
    root = DEFAULT_PIN_ROOT if pin_root_path is None else pin_root_path
    path = f"{root}/{spec.name}"
    if len(path.encode()) >= PATH_MAX:
        raise LoaderError(f"map '{spec.name}': couldn't build pin path: "
                          f"{os.strerror(errno_codes.ENAMETOOLONG)}")
    return path


# ------------------------------------------------------------- libbpf's bpf.c


def obj_get(pathname: str, file_flags: int = 0) -> int:
    """bpf_obj_get(): the fd of the object pinned at ``pathname``."""
    keep = bsys.Buffers()
    attr = Attr(BPF_OBJ_GET, OBJ_PATH_ATTR_SIZE)
    attr.set("pathname", keep.cstring_at(pathname)).set("file_flags", file_flags)
    return attr.call()


def obj_pin(fd: int, pathname: str) -> None:
    """bpf_obj_pin(): pin the object behind ``fd`` at ``pathname``."""
    keep = bsys.Buffers()
    attr = Attr(BPF_OBJ_PIN, OBJ_PATH_ATTR_SIZE)
    attr.set("pathname", keep.cstring_at(pathname)).set("bpf_fd", fd)
    attr.call()


@dataclass(frozen=True)
class MapInfo:
    """What libbpf reads of a map's struct bpf_map_info."""

    type: int
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int
    name: str
    btf_key_type_id: int = 0
    btf_value_type_id: int = 0
    map_extra: int = 0


def map_info(fd: int) -> MapInfo:
    """bpf_obj_get_info_by_fd() of a map with libbpf's 88-byte struct bpf_map_info; on
    EINVAL (kernels before 4.13) bpf_get_map_info_from_fdinfo()'s reading of
    /proc/<pid>/fdinfo/<fd>."""
    info = bytearray(MAP_INFO_SIZE)
    try:
        obj_info(fd, info, bsys.Buffers())
    except OSError as e:
        if e.errno != errno_codes.EINVAL:
            raise
        return _map_info_from_fdinfo(fd)
    words = [int.from_bytes(info[i:i + 4], "little") for i in range(0, 24, 4)]
    return MapInfo(type=words[0], key_size=words[2], value_size=words[3],
                   max_entries=words[4], map_flags=words[5],
                   name=info[24:40].split(b"\0", 1)[0].decode(errors="replace"),
                   btf_key_type_id=int.from_bytes(info[68:72], "little"),
                   btf_value_type_id=int.from_bytes(info[72:76], "little"),
                   map_extra=int.from_bytes(info[80:88], "little"))


def _map_info_from_fdinfo(fd: int) -> MapInfo:
    """bpf_get_map_info_from_fdinfo(): type, sizes, entries and flags; no name."""
    values = {"map_type": 0, "key_size": 0, "value_size": 0, "max_entries": 0,
              "map_flags": 0}
    path = f"/proc/{os.getpid()}/fdinfo/{fd}"
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in values:
                    values[key] = int(value.strip(), 0)
    except OSError as e:
        raise OSError(e.errno, f"failed to open {path}: {e.strerror}. No procfs support?") \
            from e
    return MapInfo(values["map_type"], values["key_size"], values["value_size"],
                   values["max_entries"], values["map_flags"], name="")


def dup3(old_fd: int, new_fd: int, flags: int) -> int:
    return bsys.syscall(nr.DUP3, old_fd, new_fd, flags)


# ------------------------------------------------------------------ bpffs paths


def _make_parent_dir(path: str) -> None:
    """make_parent_dir(): mkdir(dirname(path), 0700), an existing one being fine (one
    level only: libbpf does not make the root's parents)."""
    directory = os.path.dirname(path) or "."
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    except OSError as e:
        raise OSError(e.errno, f"failed to mkdir {path}: {e.strerror}") from e


def _check_path(path: str) -> None:
    """check_path(): the directory of ``path`` must be on a BPF file system (statfs)."""
    directory = os.path.dirname(path) or "."
    try:
        fs_type = bsys.statfs_type(directory)
    except OSError as e:
        raise OSError(e.errno, f"failed to statfs {directory}: {e.strerror}") from e
    if fs_type != BPF_FS_MAGIC:
        raise OSError(errno_codes.EINVAL, f"specified path {path} is not on BPF FS")


# ------------------------------------------------------------------------ load


def create_pinned_map(obj: LoadedObject, m: LoadedMap, create: Callable[[], None]) -> None:
    """bpf_object__create_maps() for a map with a pin path: reuse the map pinned there,
    or ``create`` it (BPF_MAP_CREATE and its initial contents, setting ``m.fd``) and pin
    it; if pinning finds the path taken meanwhile (EEXIST), close ours and reuse that
    one, once. LoaderError says what failed."""
    assert m.pin_path is not None
    retried = False
    while True:
        _reuse_map(obj, m)
        if retried and m.fd < 0:
            raise LoaderError(f"map '{m.spec.name}': cannot find pinned map: "
                              f"{os.strerror(errno_codes.ENOENT)}")
        if m.fd < 0:
            create()
        if m.pinned:
            return
        try:
            pin_map(m)
            return
        except OSError as e:
            _close(m)
            if not retried and e.errno == errno_codes.EEXIST:
                retried = True
                continue
            raise LoaderError(f"map '{m.spec.name}': failed to auto-pin at "
                              f"'{m.pin_path}': {e.strerror}") from e


def _reuse_map(obj: LoadedObject, m: LoadedMap) -> None:
    """bpf_object__reuse_map(): BPF_OBJ_GET of the pin path; nothing there (ENOENT):
    nothing to do; a map whose definition matches: reused (bpf_map__reuse_fd), the fd
    BPF_OBJ_GET gave closed; anything else fails."""
    assert m.pin_path is not None
    name = m.spec.name
    try:
        pin_fd = obj_get(m.pin_path)
    except OSError as e:
        if e.errno == errno_codes.ENOENT:
            return  # "found no pinned map to reuse"
        raise LoaderError(f"map '{name}': error reusing pinned map: couldn't retrieve "
                          f"pinned map '{m.pin_path}': {e.strerror}") from e
    if not _is_reuse_compatible(obj, m, pin_fd):
        bsys.close(pin_fd)
        raise LoaderError(f"map '{name}': error reusing pinned map: couldn't reuse pinned "
                          f"map at '{m.pin_path}': parameter mismatch")
    try:
        reuse_fd(m, pin_fd)
    except OSError as e:
        raise LoaderError(f"map '{name}': error reusing pinned map at '{m.pin_path}': "
                          f"{e.strerror}") from e
    finally:
        bsys.close(pin_fd)
    m.pinned = True


def _is_reuse_compatible(obj: LoadedObject, m: LoadedMap, fd: int) -> bool:
    """map_is_reuse_compat(): type, key and value sizes, entries (perf event arrays
    without max_entries: the possible CPUs, map_set_def_max_entries()), flags and
    map_extra as the pinned map has them."""
    spec = m.spec
    try:
        info = map_info(fd)
    except OSError as e:
        obj.warnings.append(f"failed to get map info for map FD {fd}: {e.strerror}")
        return False
    max_entries = spec.max_entries
    if not max_entries and spec.type == _perf_event_array():
        from bpfreplay.recording.procfs import possible_cpus

        max_entries = possible_cpus()
    return (info.type, info.key_size, info.value_size, info.max_entries, info.map_flags,
            info.map_extra) == (spec.type, spec.key_size, spec.value_size, max_entries,
                                m.flags, spec.map_extra)


def reuse_fd(m: LoadedMap, fd: int) -> None:
    """bpf_map__reuse_fd(): read the map's info again, take a close-on-exec fd number
    with open("/"), dup3() the map's fd onto it, and use that from now on (the map's
    own fd, if it had one, closed)."""
    map_info(fd)  # libbpf takes the definition and name from it; they matched already
    reserved = os.open("/", os.O_RDONLY | O_CLOEXEC)
    try:
        new_fd = dup3(fd, reserved, O_CLOEXEC)
    except OSError:
        os.close(reserved)  # (libbpf closes the -1 it got instead, leaking this one)
        raise
    if m.fd >= 0:
        bsys.close(m.fd)
    m.fd = new_fd
    m.reused = True


def pin_map(m: LoadedMap) -> None:
    """bpf_map__pin(map, NULL) of a map with a pin path: its directory made if missing,
    checked to be on a BPF file system, then BPF_OBJ_PIN. OSError on failure."""
    assert m.pin_path is not None
    if m.pinned:
        return  # "already pinned; not re-pinning"
    _make_parent_dir(m.pin_path)
    _check_path(m.pin_path)
    obj_pin(m.fd, m.pin_path)
    m.pinned = True


def unpin_map(m: LoadedMap) -> None:
    """bpf_map__unpin(map, NULL): its pin path checked, then unlinked. OSError."""
    if m.pin_path is None:
        raise OSError(errno_codes.EINVAL, f"no path to unpin map '{m.spec.name}' from")
    _check_path(m.pin_path)
    os.unlink(m.pin_path)
    m.pinned = False


def unpin_after_failed_load(obj: LoadedObject) -> None:
    """bpf_object_load()'s ``out:`` path: the maps this load pinned (not those it
    reused) are unpinned again, failures ignored."""
    for m in obj.maps:
        if m.pinned and not m.reused:
            try:
                unpin_map(m)
            except OSError:
                pass


def _close(m: LoadedMap) -> None:
    if m.fd >= 0:
        try:
            bsys.close(m.fd)
        except OSError:
            pass
        m.fd = -1


def _perf_event_array() -> int:
    from bpfreplay.uapi import enum_values

    return enum_values("bpf_map_type")["BPF_MAP_TYPE_PERF_EVENT_ARRAY"]
