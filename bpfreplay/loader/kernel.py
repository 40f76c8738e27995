"""The loader's kernel stage: what libbpf 1.1.2's bpf_object__load() and a bpftool
skeleton's load/attach/destroy do with an ``ObjectSpec``, call for call.

Order (libbpf's bpf_object_load): probe that loading works, load vmlinux BTF if the
object needs it, resolve externs, sanitise and load the object's BTF, sanitise the
maps, create them (with initial contents for data maps, freezing .rodata/.kconfig),
relocate the programs, load them (binding .rodata to each), then, as the skeleton
does, remap the mmapable data maps over their images. ``LoadedObject.close()`` undoes
it all in the skeleton's order; every error path closes what was made.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno as errno_codes
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bpfreplay import sys as bsys
from bpfreplay.errors import DecodeError, LoaderError
from bpfreplay.loader import bpfcalls
from bpfreplay.loader.features import Features, probe_loading
from bpfreplay.loader.kernel_btf import KernelBtf
from bpfreplay.loader.relocate import RelocatedProgram
from bpfreplay.loader.spec import MapKind, MapSpec, ObjectSpec, ProgramSpec
from bpfreplay.uapi import enum_values

BPF_F_MMAPABLE = 1 << 10
BPF_F_RDONLY_PROG = 1 << 7
MAP_ANONYMOUS, MAP_FIXED = 0x20, 0x10
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")



def kernel_version() -> int:
    """libbpf's get_kernel_version(): KERNEL_VERSION(major, minor, patch) of uname -r
    (or of /proc/version_signature on Ubuntu), the patch level capped at 255."""
    try:
        with open("/proc/version_signature") as f:
            parts = f.read().split()
        major, minor, patch = (int(x) for x in parts[2].split(".")[:3])
        return (major << 16) | (minor << 8) | min(patch, 255)
    except (OSError, ValueError, IndexError):
        pass
    numbers: list[int] = []
    for piece in os.uname().release.replace("-", ".").split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        numbers.append(int(digits) if digits else 0)
    major, minor, patch = (numbers + [0, 0, 0])[:3]
    return (major << 16) | (minor << 8) | min(patch, 255)


def mmap_size(m: MapSpec) -> int:
    """bpf_map_mmap_sz(): value size rounded to 8, times entries, rounded to pages."""
    size = ((m.value_size + 7) & ~7) * m.max_entries
    return (size + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE


@dataclass
class LoadedMap:
    spec: MapSpec
    fd: int = -1
    flags: int = 0  # after sanitisation
    image: int = 0  # address of the data map's memory (anonymous, then the map itself)
    image_size: int = 0
    remapped: bool = False  # image now maps the BPF map (MAP_SHARED|MAP_FIXED)
    pin_path: str | None = None  # set at open for pinned maps (loader/pinning.py)
    pinned: bool = False  # pinned at pin_path (by this load, or found there)
    reused: bool = False  # found pinned and used instead of a new map

    def write(self, offset: int, data: bytes) -> None:
        if not self.image or offset + len(data) > self.image_size:
            raise LoaderError(f"map '{self.spec.name}': cannot write {len(data)} bytes at "
                              f"offset {offset}")
        ctypes.memmove(self.image + offset, data, len(data))

    def read(self, offset: int, length: int) -> bytes:
        return ctypes.string_at(self.image + offset, length)


@dataclass
class LoadedProgram:
    spec: ProgramSpec
    fd: int = -1
    log: str = ""


@dataclass
class Link:
    """An attachment. ``kind``: "perf" (perf event + BPF link or SET_BPF), "raw_tp",
    "link" (a plain BPF link), "usdt" (uprobe links; ``destroy`` tears them down)."""

    program: str
    kind: str
    fd: int
    perf_fd: int = -1
    target: str = ""
    destroy: Callable[[], None] | None = None  # a link whose teardown is its own


@dataclass
class LoadOptions:
    log_level: int = 0  # 0: ask for the verifier log only after a failure, as libbpf
    vmlinux_btf_path: str = "/sys/kernel/btf/vmlinux"  # another path: an override


VMLINUX_BTF = LoadOptions.vmlinux_btf_path


@dataclass
class LoadedObject:
    spec: ObjectSpec
    features: Features
    maps: list[LoadedMap] = field(default_factory=list)
    programs: list[LoadedProgram] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    btf_fd: int = -1
    loaded: bool = False
    closed: bool = False
    warnings: list[str] = field(default_factory=list)  # what libbpf would only warn about
    ksyms: dict[str, Any] = field(default_factory=dict)  # resolved __ksym externs
    kernel_btf: Any = None  # KernelBtf while loading: vmlinux and module BTFs (kernel_btf.py)
    # struct_ops maps (loader/struct_ops.py): map name -> KernStructOps, and program ->
    # (attach_btf_id, expected_attach_type), set by bpf_object__init_kern_struct_ops_maps()
    struct_ops: dict[str, Any] = field(default_factory=dict)
    struct_ops_progs: dict[str, tuple[int, int]] = field(default_factory=dict)

    def map(self, name: str) -> LoadedMap:
        for m in self.maps:
            if name in (m.spec.name, m.spec.real_name):
                return m
        raise LoaderError(f"object '{self.spec.name}' has no map '{name}'")

    def program(self, name: str) -> LoadedProgram:
        for p in self.programs:
            if p.spec.name == name:
                return p
        raise LoaderError(f"object '{self.spec.name}' has no program '{name}'")

    # ------------------------------------------------------------ teardown

    def detach(self) -> None:
        """bpf_object__detach_skeleton(): destroy every link, in program order."""
        for link in self.links:
            _destroy_link(link)
        self.links.clear()

    def close(self) -> None:
        """bpf_object__destroy_skeleton(): links, then map fds, program fds, the BTF fd,
        then the maps' memory."""
        if self.closed:
            return
        self.closed = True
        self.detach()
        for m in self.maps:
            if m.fd >= 0:
                _close_quietly(m.fd)
                m.fd = -1
        for p in self.programs:
            if p.fd >= 0:
                _close_quietly(p.fd)
                p.fd = -1
        if self.btf_fd >= 0:
            _close_quietly(self.btf_fd)
            self.btf_fd = -1
        for m in self.maps:
            if m.image:
                try:
                    bsys.munmap(m.image, m.image_size)
                except OSError:
                    pass
                m.image = 0

    def __enter__(self) -> LoadedObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close_quietly(fd: int) -> None:
    try:
        bsys.close(fd)
    except OSError:
        pass


def _destroy_link(link: Link) -> None:
    """bpf_link__destroy() for each kind of link libbpf makes."""
    if link.destroy is not None:
        link.destroy()
        return
    if link.kind == "perf":
        try:
            bsys.ioctl(link.perf_fd, PERF_EVENT_IOC_DISABLE, 0)
        except OSError:
            pass
        if link.perf_fd != link.fd:
            _close_quietly(link.perf_fd)
    _close_quietly(link.fd)


PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_DISABLE = 0x2401
PERF_EVENT_IOC_SET_BPF = 0x40042408


# --------------------------------------------------------------------- open


def open_object(spec: ObjectSpec, features: Features | None = None, *,
                pin_root_path: str | None = None) -> LoadedObject:
    """bpf_object__open()'s memory side: an anonymous image per data map, holding its
    initial contents, which the user may change before load (skeleton globals), and
    the pin path of each map pinned by name (the open option pin_root_path, None:
    /sys/fs/bpf)."""
    obj = LoadedObject(spec, features or Features())
    try:
        for m in spec.maps:
            pin_path = None
            if m.pinning:  # (pinning.py is not imported for objects that pin nothing)
                from bpfreplay.loader.pinning import build_pin_path

                pin_path = build_pin_path(m, pin_root_path)
            loaded = LoadedMap(m, flags=m.flags, pin_path=pin_path)
            if m.kind != MapKind.USER:
                loaded.image_size = mmap_size(m)
                loaded.image = bsys.mmap(-1, loaded.image_size,
                                         bsys.PROT_READ | bsys.PROT_WRITE,
                                         bsys.MAP_SHARED | MAP_ANONYMOUS)
                if m.initial_value:
                    loaded.write(0, m.initial_value)
            obj.maps.append(loaded)
        obj.programs = [LoadedProgram(p) for p in spec.entry_programs]
    except BaseException:
        obj.close()
        raise
    return obj


# --------------------------------------------------------------------- load


def load(obj: LoadedObject, options: LoadOptions | None = None) -> LoadedObject:
    """bpf_object__load() and the skeleton's remapping of data maps. On any error,
    everything made so far is closed and LoaderError says where it failed."""
    options = options or LoadOptions()
    if obj.loaded:
        raise LoaderError(f"object '{obj.spec.name}': load can't be attempted twice")
    obj.loaded = True
    try:
        _load(obj, options)
    except BaseException:
        from bpfreplay.loader.pinning import unpin_after_failed_load

        unpin_after_failed_load(obj)  # bpf_object_load()'s out: path, before unloading
        obj.close()
        raise
    return obj


def _load(obj: LoadedObject, options: LoadOptions) -> None:
    spec, features = obj.spec, obj.features
    try:
        probe_loading(features)
    except OSError as e:
        raise LoaderError(f"loading object '{spec.name}': the kernel refuses even a trivial "
                          f"program: {e.strerror} (is bpf() allowed for this user?)") from e
    vmlinux = _vmlinux_btf(options) if spec.needs_vmlinux_btf else None
    kernel_btf = obj.kernel_btf = KernelBtf(
        vmlinux, features, overridden=options.vmlinux_btf_path != VMLINUX_BTF)
    try:
        kconfig_image = _resolve_externs(obj, kernel_btf)
        _load_btf(obj)
        _sanitize_maps(obj)
        if any(m.struct_ops is not None for m in spec.maps):
            from bpfreplay.loader import struct_ops

            struct_ops.init_kern_maps(obj, kernel_btf.vmlinux)
        _create_maps(obj, kconfig_image)
        relocated = _relocate(obj, kernel_btf)
        _load_programs(obj, relocated, options)
    finally:
        # bpf_object_load() closes the module BTF fds and frees vmlinux BTF at its end,
        # whether the load worked or not (before unloading on error).
        kernel_btf.close()
        obj.kernel_btf = None
    _remap_data_maps(obj)


def _vmlinux_btf(options: LoadOptions):  # noqa: ANN202 - a Btf
    """The kernel's BTF, indexed but not decoded (decode/btf_lazy.py): CO-RE and ksym
    lookups decode the few types they reach; the index itself comes from the user's
    cache when this kernel was seen before (loader/btf_cache.py). Mapped where the
    kernel allows it (sysfs vmlinux BTF can be mapped since 6.16), read otherwise, as
    libbpf 1.1.2's btf__load_vmlinux_btf() reads it."""
    from bpfreplay.loader.btf_cache import load_vmlinux_index

    path = options.vmlinux_btf_path
    running_kernel = path == VMLINUX_BTF  # (an override is any file: hashed every time)
    try:
        mapping = bsys.map_file(path)
        if mapping is None:
            with open(path, "rb") as f:
                return load_vmlinux_index(f.read(), running_kernel=running_kernel)
        return load_vmlinux_index(mapping.view, keep=mapping, running_kernel=running_kernel)
    except OSError as e:
        raise LoaderError(f"reading the kernel's BTF {path}: {e.strerror}") from e
    except DecodeError as e:
        raise LoaderError(f"reading the kernel's BTF {path}: {e}") from e


def _resolve_externs(obj: LoadedObject, kernel_btf: Any) -> bytes | None:
    """bpf_object__resolve_externs(): the .kconfig map's bytes (Kconfig from
    /proc/config.gz or /boot, LINUX_* values, the bpf_cookie/syscall_wrapper probes
    only if asked for) and the __ksym externs (kept for relocation)."""
    from bpfreplay.loader.externs import kconfig_value, resolve_ksyms
    from bpfreplay.loader.spec import ExternKind

    externs = obj.spec.externs
    if not externs:
        return None
    names = {e.name for e in externs}
    image = None
    index = obj.spec.kconfig_map_index
    if index is not None:
        needs_config = any(e.kind == ExternKind.KCONFIG and e.name.startswith("CONFIG_")
                           for e in externs)
        image = kconfig_value(
            externs, obj.spec.maps[index].value_size,
            config=_kernel_config() if needs_config else None,
            kernel_version=kernel_version(),
            bpf_cookie="LINUX_HAS_BPF_COOKIE" in names and obj.features.supports("bpf_cookie"),
            syscall_wrapper="LINUX_HAS_SYSCALL_WRAPPER" in names
            and obj.features.supports("syscall_wrapper"),
            warn=obj.warnings.append)
    if any(e.kind == ExternKind.KSYM for e in externs):
        kallsyms = None
        try:
            with open("/proc/kallsyms") as f:
                kallsyms = f.read()
        except OSError:
            pass
        obj.ksyms = resolve_ksyms(externs, obj.spec.btf, kernel_btf, kallsyms)
    return image


def _kernel_config() -> str | None:
    """The running kernel's Kconfig, where libbpf looks for it: /boot/config-$(uname -r)
    first, then /proc/config.gz, either gzipped or not (bpf_object__read_kconfig_file():
    gzopen() of each in that order). Debian kernels have only the first."""
    import gzip

    for path in (f"/boot/config-{os.uname().release}", "/proc/config.gz"):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            continue
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        return data.decode(errors="replace")
    return None


# ---------------------------------------------------------------------- BTF


BTF_SANITIZE_FEATURES = ("btf_global_func", "btf_datasec", "btf_float", "btf_func",
                         "btf_decl_tag", "btf_type_tag", "btf_enum64")


def _load_btf(obj: LoadedObject) -> None:
    """bpf_object__sanitize_and_load_btf()."""
    spec, features = obj.spec, obj.features
    if spec.btf_bytes is None:
        return
    if not features.supports("btf"):
        return  # libbpf: "Kernel doesn't support BTF, skipping uploading it."
    blob = spec.btf_bytes
    # btf_needs_sanitization() asks all seven, in this order.
    support = {name: features.supports(name) for name in BTF_SANITIZE_FEATURES}
    if not all(support.values()):
        from bpfreplay.loader.btf_sanitize import sanitize_btf

        blob = sanitize_btf(blob, support)
    try:
        obj.btf_fd = _btf_load_with_log(blob, features)
    except OSError as e:
        obj.btf_fd = -1
        # BTF is optional unless the object has struct_ops; libbpf only warns.
        obj.warnings.append(f"loading the object's BTF failed ({e.strerror}); "
                            "going on without BTF, as libbpf does")


def _btf_load_with_log(blob: bytes, features: Features) -> int:
    """btf_load_into_kernel(): no log first; on failure a 16 MiB log at level 1, grown
    on ENOSPC."""
    try:
        return bpfcalls.btf_load(blob, features=features)
    except OSError:
        pass
    size = bpfcalls.BPF_LOG_BUF_SIZE
    while True:
        keep = bsys.Buffers()
        address, buf = keep.zeroed(size)
        try:
            return bpfcalls.btf_load(blob, features=features, log_buf=address, log_size=size,
                                     log_level=1)
        except OSError as e:
            if e.errno == errno_codes.ENOSPC and size <= 0xFFFFFFFF // 2:
                size *= 2
                continue
            log = buf.value.decode(errors="replace")
            raise OSError(e.errno, f"{e.strerror}: {log.strip()}" if log else e.strerror) \
                from e


# --------------------------------------------------------------------- maps


def _sanitize_maps(obj: LoadedObject) -> None:
    """bpf_object__sanitize_maps(): without mmapable arrays, data maps lose the flag."""
    for m in obj.maps:
        if m.spec.kind != MapKind.USER and not obj.features.supports("array_mmap"):
            m.flags ^= BPF_F_MMAPABLE


def _create_maps(obj: LoadedObject, kconfig_image: bytes | None) -> None:
    """bpf_object__create_maps()."""
    for m in obj.maps:
        spec = m.spec
        if spec.kind != MapKind.USER and not obj.features.supports("global_data"):
            continue  # libbpf skips them; programs using them fail at load
        if m.pin_path:  # reused if pinned there already, else created, then pinned
            from bpfreplay.loader.pinning import create_pinned_map

            create_pinned_map(obj, m, lambda m=m: _create_filled_map(obj, m, kconfig_image))
        else:
            _create_filled_map(obj, m, kconfig_image)


def _create_filled_map(obj: LoadedObject, m: LoadedMap, kconfig_image: bytes | None) -> None:
    """One map created (m.fd) with its initial contents or slots."""
    spec = m.spec
    try:
        m.fd = _create_map(obj, spec, m.flags)
    except OSError as e:
        raise LoaderError(f"map '{spec.name}': failed to create: {e.strerror}") from e
    if spec.kind != MapKind.USER:
        _populate_data_map(obj, m, kconfig_image)
    if spec.init_slots and spec.type != _PROG_ARRAY:
        _fill_slots(obj, m, lambda name: obj.map(name).fd)


_PROG_ARRAY = enum_values("bpf_map_type")["BPF_MAP_TYPE_PROG_ARRAY"]
_PERF_EVENT_ARRAY = enum_values("bpf_map_type")["BPF_MAP_TYPE_PERF_EVENT_ARRAY"]


def _fill_slots(obj: LoadedObject, m: LoadedMap, fd_of: Callable[[str], int]) -> None:
    """init_map_in_map_slots() / init_prog_array_slots(): slot i holds the fd of the
    map or program the object's definition names."""
    for slot, target in enumerate(m.spec.init_slots):
        if target is None:
            continue
        try:
            bpfcalls.map_update_elem(m.fd, struct.pack("<I", slot),
                                     struct.pack("<i", fd_of(target)))
        except OSError as e:
            raise LoaderError(f"map '{m.spec.name}': failed to initialize slot [{slot}] to "
                              f"'{target}': {e.strerror}") from e


_NO_BTF_MAP_TYPES = frozenset(
    enum_values("bpf_map_type")["BPF_MAP_TYPE_" + n] for n in (
        "PERF_EVENT_ARRAY", "CGROUP_ARRAY", "STACK_TRACE", "ARRAY_OF_MAPS", "HASH_OF_MAPS",
        "DEVMAP", "DEVMAP_HASH", "CPUMAP", "XSKMAP", "SOCKMAP", "SOCKHASH", "QUEUE", "STACK"))
_MAP_IN_MAP = frozenset(enum_values("bpf_map_type")["BPF_MAP_TYPE_" + n]
                        for n in ("ARRAY_OF_MAPS", "HASH_OF_MAPS"))


def _create_map(obj: LoadedObject, spec: MapSpec, flags: int) -> int:
    """bpf_object__create_map(): the inner map first for maps of maps (closed after),
    BTF ids when the object's BTF is loaded, and one retry without BTF."""
    btf_fd = obj.btf_fd if obj.btf_fd >= 0 else 0
    key_id = spec.btf_key_type_id if obj.btf_fd >= 0 else 0
    value_id = spec.btf_value_type_id if obj.btf_fd >= 0 else 0
    if spec.type in _NO_BTF_MAP_TYPES:
        btf_fd = key_id = value_id = 0
    inner_fd = -1
    if spec.type in _MAP_IN_MAP and spec.inner is not None:
        inner_fd = _create_map(obj, spec.inner, spec.inner.flags)

    value_size, vmlinux_value_id = spec.value_size, 0
    if spec.struct_ops is not None:
        from bpfreplay.loader.struct_ops import create_args

        value_size, vmlinux_value_id = create_args(obj, spec)
    max_entries = spec.max_entries
    if spec.type == _PERF_EVENT_ARRAY and not max_entries:
        from bpfreplay.recording.procfs import possible_cpus

        max_entries = possible_cpus()  # map_set_def_max_entries()

    def create(btf: int, key: int, value: int) -> int:
        return bpfcalls.map_create(
            spec.type, spec.name, spec.key_size, value_size, max_entries,
            features=obj.features, map_flags=flags, btf_fd=btf, btf_key_type_id=key,
            btf_value_type_id=value, inner_map_fd=max(inner_fd, 0), map_extra=spec.map_extra,
            numa_node=spec.numa_node, btf_vmlinux_value_type_id=vmlinux_value_id)

    try:
        try:
            return create(btf_fd, key_id, value_id)
        except OSError:
            if not (key_id or value_id):
                raise
            return create(0, 0, 0)  # "Retrying without BTF."
    finally:
        if inner_fd >= 0:
            _close_quietly(inner_fd)


def _populate_data_map(obj: LoadedObject, m: LoadedMap, kconfig_image: bytes | None) -> None:
    """bpf_object__populate_internal_map(): the image as the map's one value; .rodata
    and .kconfig then frozen."""
    if m.spec.kind == MapKind.KCONFIG and kconfig_image is not None:
        m.write(0, kconfig_image)
    try:
        bpfcalls.map_update_elem_at(m.fd, struct.pack("<i", 0), m.image)
        if m.spec.kind in (MapKind.RODATA, MapKind.KCONFIG):
            bpfcalls.map_freeze(m.fd)
    except OSError as e:
        raise LoaderError(f"map '{m.spec.name}': setting its initial contents failed: "
                          f"{e.strerror}") from e


# ----------------------------------------------------------------- programs


def _relocate(obj: LoadedObject, kernel_btf: Any) -> dict[str, RelocatedProgram]:
    """bpf_object__relocate(): CO-RE for the whole object first (bpf_object__relocate_core,
    candidates from vmlinux, and from module BTFs only where vmlinux has none), then per
    program map fds into ld_imm64 and subprograms appended; func/line info kept only if
    the kernel takes it (libbpf asks FEAT_BTF_FUNC here)."""
    from bpfreplay.loader.relocate import relocate_program

    fds = [m.fd for m in obj.maps]
    core_insns = {}
    if obj.spec.core_relos and obj.spec.btf_ext is not None:
        from bpfreplay.loader.core import apply_core_relocations

        try:
            core_insns = apply_core_relocations(obj.spec, kernel_btf)
        except LoaderError as e:
            raise LoaderError(f"object '{obj.spec.name}': failed to perform CO-RE "
                              f"relocations: {e}") from e
    btf_func = obj.features.supports("btf_func") if obj.spec.btf_ext is not None else True
    out = {}
    for p in obj.programs:
        if not p.spec.autoload:
            continue
        try:
            out[p.spec.name] = relocate_program(obj.spec, p.spec, fds, core_insns=core_insns,
                                                ksyms=obj.ksyms or None, btf_func=btf_func,
                                                probe_read_kernel=True)
        except LoaderError as e:
            raise LoaderError(f"prog '{p.spec.name}': relocating: {e}") from e
    return out


def _probe_read_calls(insns: bytes) -> list[int]:
    """Offsets of the helper calls of bpf_probe_read_{kernel,user}[_str]."""
    from bpfreplay.loader.relocate import PROBE_READ_FALLBACK as fallback

    out = []
    for i in range(0, len(insns) - 7, 8):
        code, regs, _, imm = struct.unpack_from("<BBhi", insns, i)
        if code == 0x85 and regs >> 4 == 0 and imm in fallback:
            out.append(i)
    return out


def _sanitize_insns(obj: LoadedObject, insns: bytes) -> bytes:
    """bpf_object__sanitize_prog(): on kernels without bpf_probe_read_{kernel,user}
    call bpf_probe_read instead."""
    from bpfreplay.loader.relocate import PROBE_READ_FALLBACK as fallback

    calls = _probe_read_calls(insns)
    if not calls or obj.features.supports("probe_read_kern"):
        return insns
    out = bytearray(insns)
    for i in calls:
        struct.pack_into("<i", out, i + 4, fallback[struct.unpack_from("<i", out, i + 4)[0]])
    return bytes(out)


def _load_programs(obj: LoadedObject, relocated: dict[str, RelocatedProgram],
                   options: LoadOptions) -> None:
    spec, features = obj.spec, obj.features
    # bpf_object__load_progs() sanitises every program of the object before loading
    # any: .text subprograms no entry program calls and programs not autoloaded too, so
    # one probe_read_kernel call anywhere asks FEAT_PROBE_READ_KERN here.
    if any(_probe_read_calls(p.insns) for p in spec.programs):
        features.supports("probe_read_kern")
    for name, r in relocated.items():
        relocated[name] = dataclasses.replace(r, insns=_sanitize_insns(obj, r.insns))
    kern_version = spec.kern_version if spec.kern_version is not None else kernel_version()
    for p in obj.programs:
        if not p.spec.autoload:
            continue
        if p.spec.prog_type == 0:
            # bpf_object_load_prog(): a section no sec_def knows left the type UNSPEC;
            # the first thing checked, before any probe or call of this program.
            raise LoaderError(f"prog '{p.spec.name}': missing BPF prog type, check ELF "
                              f"section name '{p.spec.section}' (-EINVAL)")
        r = relocated[p.spec.name]
        load = _prog_load_attrs(obj, p.spec, r, kern_version)
        p.fd, p.log = _prog_load_with_log(p.spec, load, features, options.log_level)
        if spec.has_rodata and features.supports("prog_bind_map"):
            for m in obj.maps:
                if m.spec.kind == MapKind.RODATA and m.fd >= 0:
                    try:
                        bpfcalls.prog_bind_map(p.fd, m.fd)
                    except OSError:
                        pass  # libbpf: "Don't fail hard if can't bind rodata."
    # bpf_object_init_prog_arrays()
    for m in obj.maps:
        if m.spec.init_slots and m.spec.type == _PROG_ARRAY and m.fd >= 0:
            _fill_slots(obj, m, lambda name: _program_fd(obj.program(name)))


def _program_fd(p: LoadedProgram) -> int:
    """bpf_program__fd(): the fd, or -ENOENT for a program not loaded (not autoloaded),
    which init_prog_array_slots() then writes into the slot as it is."""
    return p.fd if p.fd >= 0 else -errno_codes.ENOENT


def _prog_load_attrs(obj: LoadedObject, prog: ProgramSpec, r: RelocatedProgram,
                     kern_version: int) -> bpfcalls.ProgLoad:
    from bpfreplay.loader.sections import SecFlags

    # bpf_object_load_prog() asks FEAT_PROG_NAME before anything else of the load
    # (prog_prepare_load_fn, where the attach target is looked up, comes later).
    named = obj.features.supports("prog_name")
    load = bpfcalls.ProgLoad(prog.prog_type, r.insns, license=obj.spec.license,
                             name=prog.name if named else None, kern_version=kern_version)
    load.expected_attach_type = prog.expected_attach_type
    if prog.name in obj.struct_ops_progs:  # set by bpf_map__init_kern_struct_ops()
        load.attach_btf_id, load.expected_attach_type = obj.struct_ops_progs[prog.name]
    if obj.kernel_btf is not None:
        load.fd_array = obj.kernel_btf.fd_array_bytes()  # module BTF fds of kfuncs
    if obj.btf_fd >= 0 and obj.features.supports("btf_func"):
        load.prog_btf_fd = obj.btf_fd
        if r.func_info:
            load.func_info, load.func_info_rec_size = r.func_info, r.func_info_rec_size
            load.func_info_cnt = r.func_info_count
        if r.line_info:
            load.line_info, load.line_info_rec_size = r.line_info, r.line_info_rec_size
            load.line_info_cnt = r.line_info_count
    # libbpf_prepare_prog_load()
    flags = prog.sec_flags
    if flags & SecFlags.EXP_ATTACH_OPT and not obj.features.supports("exp_attach_type"):
        load.expected_attach_type = 0
    load.prog_flags |= prog.prog_flags
    if flags & SecFlags.ATTACH_BTF:
        load.attach_btf_id, load.attach_btf_obj_fd = _attach_btf_id(obj, prog)
    return load


_ATTACH_TYPES = enum_values("bpf_attach_type")
_PROG_TYPE_EXT = enum_values("bpf_prog_type")["BPF_PROG_TYPE_EXT"]
# libbpf's btf_get_kernel_prefix_kind(): where the kernel's BTF names attach targets.
_ATTACH_BTF_NAMES = {
    _ATTACH_TYPES["BPF_TRACE_RAW_TP"]: ("btf_trace_", "TYPEDEF"),
    _ATTACH_TYPES["BPF_LSM_MAC"]: ("bpf_lsm_", "FUNC"),
    _ATTACH_TYPES["BPF_LSM_CGROUP"]: ("bpf_lsm_", "FUNC"),
    _ATTACH_TYPES["BPF_TRACE_ITER"]: ("bpf_iter_", "FUNC"),
}


def _attach_btf_id(obj: LoadedObject, prog: ProgramSpec) -> tuple[int, int]:
    """libbpf_find_attach_btf_id() / find_kernel_btf_id(): (type id, BTF object fd) of
    the TYPEDEF btf_trace_<name> (tp_btf), FUNC bpf_lsm_<name> (lsm), bpf_iter_<name>
    (iter) or <name> (fentry/fexit/fmod_ret): in vmlinux (fd 0), else in a module."""
    from bpfreplay.decode.btf import Kind

    if "/" not in prog.section:
        raise LoaderError(f"prog '{prog.name}': no BTF-based attach target is specified in "
                          f"section '{prog.section}'")
    if prog.prog_type == _PROG_TYPE_EXT:
        # libbpf_find_attach_btf_id(): freplace/ names a function of another program,
        # whose fd must be set before load; nothing is looked up in kernel BTFs.
        raise LoaderError(f"prog '{prog.name}': attach program FD is not set (freplace/ "
                          "needs a target program: -EINVAL)")
    target = prog.section.split("/", 1)[1]
    prefix, kind = _ATTACH_BTF_NAMES.get(prog.expected_attach_type, ("", "FUNC"))
    found = obj.kernel_btf.find_attach_target(prefix + target, Kind[kind]) \
        if obj.kernel_btf is not None else None
    if found is None:
        raise LoaderError(f"prog '{prog.name}': failed to find kernel BTF type ID of "
                          f"'{target}' ({prefix + target} is in neither vmlinux nor module "
                          "BTFs): -ESRCH")
    found_type, module = found
    return found_type.id, module.fd if module is not None else 0


def _prog_load_with_log(prog: ProgramSpec, load: bpfcalls.ProgLoad, features: Features,
                        log_level: int) -> tuple[int, str]:
    """bpf_object_load_prog(): without a log first (unless asked); on failure again at
    log level 1 with libbpf's own 16 MiB buffer, doubled on ENOSPC."""
    size = 0
    buf = None
    while True:
        keep = bsys.Buffers()
        address = 0
        if log_level:
            size = max(bpfcalls.BPF_LOG_BUF_SIZE, size * 2)
            address, buf = keep.zeroed(size)
            load.log_level, load.log_size = log_level, size
        try:
            fd = bpfcalls.prog_load(load, features=features, log_buf=address)
            return fd, buf.value.decode(errors="replace") if buf is not None else ""
        except OSError as e:
            if log_level == 0:
                log_level = 1
                continue
            if e.errno == errno_codes.ENOSPC and size <= 0xFFFFFFFF // 2:
                continue
            log = buf.value.decode(errors="replace") if buf is not None else ""
            raise ProgramLoadError(prog, e, log) from e


class ProgramLoadError(LoaderError):
    """The verifier (or the kernel) refused a program; ``log`` is the verifier's log.
    The message gives the verifier's reason, the failing instruction and its source
    line (from the log's own line-info comments)."""

    def __init__(self, prog: ProgramSpec, error: OSError, log: str):
        self.program = prog.name
        self.errno = error.errno
        self.log = log
        lines = [line for line in log.rstrip("\n").splitlines() if line.strip()]
        failing = next((i for i in range(len(lines) - 1, -1, -1)
                        if lines[i][:1].isdigit() and ": (" in lines[i]), None)
        detail = []
        if failing is not None:
            reason = [line for line in lines[failing + 1:]
                      if not line.startswith(("processed ", "verification time"))]
            if reason:
                detail.append("verifier: " + " / ".join(reason))
            detail.append("at instruction " + lines[failing])
            source = next((lines[i] for i in range(failing - 1, -1, -1)
                           if lines[i].startswith(";")), None)
            if source:
                detail.append("source: " + source.lstrip("; ").strip())
        elif lines:
            detail.append("verifier: " + " / ".join(lines[-3:]))
        elif error.errno == errno_codes.EPERM:
            detail.append(_eperm_reason(prog))
        if log:
            detail.append(f"({len(lines)} line(s) of verifier log; -v shows them)")
        super().__init__(f"prog '{prog.name}': BPF program load failed: {error.strerror}"
                         + "".join("\n  " + d for d in detail))


_TRAMPOLINE_TYPES = frozenset(enum_values("bpf_prog_type")["BPF_PROG_TYPE_" + n]
                              for n in ("TRACING", "LSM", "EXT"))


def _eperm_reason(prog: ProgramSpec) -> str:
    """Why the kernel says EPERM without a verifier log."""
    if prog.prog_type in _TRAMPOLINE_TYPES:
        return (f"the kernel refuses {prog.section.split('/')[0]} programs here: EPERM before "
                "verification means a policy forbids BPF trampolines (fentry/fexit/lsm) on "
                "this machine; tracepoints, raw tracepoints and tp_btf work")
    return "EPERM before verification: loading needs CAP_BPF (and CAP_PERFMON) or root"


# --------------------------------------------------------------- skeleton


def _remap_data_maps(obj: LoadedObject) -> None:
    """bpf_object__load_skeleton(): each mmapable data map's image is replaced, at the
    same address, by a shared mapping of the map itself."""
    for m in obj.maps:
        if not m.image or not m.flags & BPF_F_MMAPABLE or m.fd < 0:
            continue
        prot = bsys.PROT_READ if m.flags & BPF_F_RDONLY_PROG else bsys.PROT_READ | bsys.PROT_WRITE
        try:
            bsys.mmap(m.fd, m.image_size, prot, bsys.MAP_SHARED | MAP_FIXED, address=m.image)
        except OSError as e:
            raise LoaderError(f"map '{m.spec.name}': failed to re-mmap(): {e.strerror}") from e
        m.remapped = True

