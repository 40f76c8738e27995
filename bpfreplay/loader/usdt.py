"""USDT programs, attached as libbpf 1.1.2 auto-attaches ``SEC("usdt/PATH:PROVIDER:NAME")``
(libbpf.c attach_usdt() → bpf_program__attach_usdt(); src/usdt.c usdt_manager_new(),
usdt_manager_attach_usdt(), bpf_link_usdt_detach()).

The object's USDT manager is made at its first USDT attach: it finds the two maps
<bpf/usdt.bpf.h> puts in the object (``__bpf_usdt_specs``, ``__bpf_usdt_ip_to_spec_id``),
asks whether the kernel has BPF cookies (FEAT_BPF_COOKIE, the ``bpf_cookie`` probe of
features.py: usually already answered while resolving the LINUX_HAS_BPF_COOKIE kconfig
extern) and whether the uprobe PMU takes a ``ref_ctr_offset`` (semaphores). Attaching
then reads the target's ``.note.stapsdt`` (usdt_notes.py) and, for each call site in
note order: a spec id (one per distinct argument string within this attach, reusing
ids freed by earlier detaches), BPF_MAP_UPDATE_ELEM of the encoded spec when the id is
new, BPF_MAP_UPDATE_ELEM of abs_ip → spec id (BPF_NOEXIST) only without BPF cookies,
then a uprobe (perf_event_open on the uprobe PMU: path in config1, file offset in
config2, the semaphore's file offset in config's upper 32 bits) with a perf link whose
bpf_cookie is the spec id. Detaching destroys each uprobe link in order, each followed
without BPF cookies by BPF_MAP_DELETE_ELEM of its ip; the spec map is left as it is.

A bare ``SEC("usdt")`` names no target: libbpf does not auto-attach it.
"""

from __future__ import annotations

import errno as errno_codes
import os
import re
import struct
from dataclasses import dataclass, field

from bpfreplay.errors import LoaderError
from bpfreplay.loader import bpfcalls
from bpfreplay.loader.kernel import (
    Link,
    LoadedObject,
    LoadedProgram,
    _close_quietly,
    _destroy_link,
)
from bpfreplay.uapi import cmd_value

SPECS_MAP = "__bpf_usdt_specs"
IP_TO_SPEC_ID_MAP = "__bpf_usdt_ip_to_spec_id"
REF_CTR_OFFSET_FORMAT = "/sys/bus/event_source/devices/uprobe/format/ref_ctr_offset"
BPF_ANY, BPF_NOEXIST = 0, 1
BPF_MAP_DELETE_ELEM = cmd_value("BPF_MAP_DELETE_ELEM")
MAP_DELETE_SIZE = 32  # offsetofend(union bpf_attr, flags), as bpf_map_delete_elem()
REF_CTR_OFFSET_SHIFT = 32  # PERF_UPROBE_REF_CTR_OFFSET_SHIFT
# sscanf(sec_name, "usdt/%m[^:]:%m[^:]:%m[^:]"): each part at least one character
_SECTION = re.compile(r"usdt/([^:]+):([^:]+):([^:]+)")


def parse_section(section: str) -> tuple[str, str, str] | None:
    """attach_usdt(): (path, provider, name), or None for a bare ``usdt`` section;
    LoaderError (EINVAL) for a section of another shape."""
    if section == "usdt":
        return None
    m = _SECTION.match(section)
    if m is None:
        error = LoaderError(f"invalid section '{section}', expected "
                            "SEC(\"usdt/<path>:<provider>:<name>\")")
        error.errno = errno_codes.EINVAL  # type: ignore[attr-defined]
        raise error
    path, provider, name = m.groups()
    return path, provider, name


@dataclass
class UsdtManager:
    """struct usdt_manager: one per object, made at its first USDT attach."""

    specs_map_fd: int
    specs_max_entries: int
    ip_map_fd: int
    has_bpf_cookie: bool
    has_sema_refcnt: bool
    free_spec_ids: list[int] = field(default_factory=list)
    next_free_spec_id: int = 0

    def allocate(self, spec_str: str, this_attach: dict[str, int], ids: list[int]) -> \
            tuple[int, bool]:
        """allocate_spec_id(): (spec id, whether it is new to this attach)."""
        known = this_attach.get(spec_str)
        if known is not None:
            return known, False
        if self.free_spec_ids:
            spec_id = self.free_spec_ids.pop()
        else:
            if self.next_free_spec_id >= self.specs_max_entries:
                raise _error(errno_codes.E2BIG, f"usdt: no spec id left in map '{SPECS_MAP}' "
                             f"({self.specs_max_entries} entries)")
            spec_id = self.next_free_spec_id
            self.next_free_spec_id += 1
        this_attach[spec_str] = spec_id
        ids.append(spec_id)
        return spec_id, True


def _error(errno: int, message: str) -> LoaderError:
    error = LoaderError(message)
    error.errno = errno  # type: ignore[attr-defined]
    return error


_MANAGERS = "usdt_manager"  # the attribute of LoadedObject that holds it


def manager(obj: LoadedObject) -> UsdtManager:
    """obj->usdt_man, made by usdt_manager_new() the first time (a failure is kept and
    answered again, as libbpf keeps the error pointer)."""
    made = getattr(obj, _MANAGERS, None)
    if isinstance(made, LoaderError):
        raise made
    if made is not None:
        return made
    try:
        specs, ip_map = obj.map(SPECS_MAP), obj.map(IP_TO_SPEC_ID_MAP)
    except LoaderError:
        failure = _error(errno_codes.ESRCH, "usdt: failed to find USDT support BPF maps, "
                         "did you forget to include bpf/usdt.bpf.h?")
        setattr(obj, _MANAGERS, failure)
        raise failure from None
    made = UsdtManager(specs.fd, specs.spec.max_entries, ip_map.fd,
                       has_bpf_cookie=obj.features.supports("bpf_cookie"),
                       has_sema_refcnt=os.access(REF_CTR_OFFSET_FORMAT, os.F_OK,
                                                 effective_ids=True))
    setattr(obj, _MANAGERS, made)
    return made


def map_delete_elem(fd: int, key: bytes) -> None:
    """bpf_map_delete_elem()."""
    from bpfreplay import sys as bsys

    keep = bsys.Buffers()
    attr = bpfcalls.Attr(BPF_MAP_DELETE_ELEM, MAP_DELETE_SIZE)
    attr.set("map_fd", fd).set("key", keep.bytes_at(key))
    attr.call()


@dataclass
class _UsdtLink:
    """struct bpf_link_usdt: the uprobe links of one attach and the spec ids it took."""

    man: UsdtManager
    spec_ids: list[int] = field(default_factory=list)
    uprobes: list[tuple[int, Link]] = field(default_factory=list)  # (abs_ip, link)

    def detach(self) -> None:
        """bpf_link_usdt_detach(): each uprobe link destroyed in order, its ip entry
        deleted after it when there are no BPF cookies; the spec ids go back to the
        manager's free list (the spec map is not touched)."""
        for abs_ip, link in self.uprobes:
            _destroy_link(link)
            if not self.man.has_bpf_cookie:
                try:
                    map_delete_elem(self.man.ip_map_fd, struct.pack("<q", abs_ip))
                except OSError:
                    pass
        self.uprobes.clear()
        self.man.free_spec_ids.extend(self.spec_ids)
        self.spec_ids = []


def attach(obj: LoadedObject, prog: LoadedProgram) -> Link | None:
    """attach_usdt() for one program: a Link of kind "usdt" whose teardown is the USDT
    link's own, or None for a bare SEC("usdt")."""
    where = f"prog '{prog.spec.name}' ({prog.spec.section})"
    try:
        parsed = parse_section(prog.spec.section)
        if parsed is None:
            return None
        path, provider, name = parsed
        return attach_usdt(obj, prog, path, provider, name, pid=-1)
    except LoaderError as e:
        wrapped = LoaderError(f"{where}: {e}")
        wrapped.errno = getattr(e, "errno", None)  # type: ignore[attr-defined]
        raise wrapped from e


def attach_usdt(obj: LoadedObject, prog: LoadedProgram, path: str, provider: str,
                name: str, *, pid: int = -1, cookie: int = 0) -> Link:
    """bpf_program__attach_usdt(prog, pid, path, provider, name, {usdt_cookie}): a path
    without '/' resolved as uprobes resolve it, the manager made if this is the first
    USDT attach, then usdt_manager_attach_usdt() (``pid`` -1: any process, 0: this
    one). On a failure the uprobes made so far are destroyed before the error is
    raised, as its err_out path does."""
    from bpfreplay.loader.usdt_notes import collect_targets

    if prog.fd < 0:
        raise _error(errno_codes.EINVAL, f"prog '{prog.spec.name}': can't attach BPF "
                     "program w/o FD (did you load it?)")
    if "/" not in path:
        from bpfreplay.loader.uprobe import resolve_full_path

        path = resolve_full_path(path)
    man = manager(obj)
    pid = -1 if pid < 0 else (os.getpid() if pid == 0 else pid)
    targets = collect_targets(path, provider, name, pid=pid, cookie=cookie,
                              has_bpf_cookie=man.has_bpf_cookie,
                              has_sema_refcnt=man.has_sema_refcnt)
    what = f"'{provider}:{name}' in '{path}'"
    if not targets:
        raise _error(errno_codes.ENOENT, f"usdt: no USDT {what}")
    usdt_link = _UsdtLink(man)
    this_attach: dict[str, int] = {}
    try:
        for number, target in enumerate(targets):
            spec_id, is_new = man.allocate(target.spec_str, this_attach, usdt_link.spec_ids)
            key = struct.pack("<i", spec_id)
            if is_new:
                try:
                    bpfcalls.map_update_elem(man.specs_map_fd, key, target.encode_spec(),
                                             BPF_ANY)
                except OSError as e:
                    raise _error(e.errno, f"usdt: failed to set USDT spec #{spec_id} for "
                                 f"{what}: {e.strerror}") from e
            if not man.has_bpf_cookie:
                try:
                    bpfcalls.map_update_elem(man.ip_map_fd, struct.pack("<q", target.abs_ip),
                                             key, BPF_NOEXIST)
                except OSError as e:
                    if e.errno == errno_codes.EEXIST:
                        raise _error(e.errno, f"usdt: IP collision detected for spec "
                                     f"#{spec_id} for {what}") from e
                    raise _error(e.errno, f"usdt: failed to map IP {target.abs_ip:#x} to "
                                 f"spec #{spec_id} for {what}: {e.strerror}") from e
            try:
                link = _attach_uprobe(obj, prog, pid, path, target.rel_ip, target.sema_off,
                                      spec_id if man.has_bpf_cookie else 0)
            except LoaderError as e:
                raise _error(getattr(e, "errno", None) or errno_codes.EINVAL,
                             f"usdt: failed to attach uprobe #{number} for {what}: {e}") \
                    from e
            usdt_link.uprobes.append((target.abs_ip, link))
    except BaseException:
        usdt_link.detach()
        raise
    offsets = ",".join(f"{link.target.rsplit(':', 1)[-1]}" for _, link in usdt_link.uprobes)
    first = usdt_link.uprobes[0][1]
    return Link(prog.spec.name, "usdt", first.fd, first.perf_fd,
                f"{path}:{provider}:{name} ({len(targets)} uprobe"
                f"{'s' if len(targets) > 1 else ''} at {offsets})",
                destroy=usdt_link.detach)


def _attach_uprobe(obj: LoadedObject, prog: LoadedProgram, pid: int, path: str, offset: int,
                   ref_ctr_offset: int, bpf_cookie: int) -> Link:
    """bpf_program__attach_uprobe_opts(prog, pid, path, offset, {ref_ctr_offset,
    bpf_cookie}) on the uprobe PMU: perf_event_open_probe() (pid -1 on CPU 0, a pid on
    any CPU), then bpf_program__attach_perf_event_opts() with the cookie; the event is
    closed if attaching to it fails."""
    from bpfreplay import sys as bsys
    from bpfreplay.loader import uprobe
    from bpfreplay.loader.attach import (
        PERF_ATTR_SIZE,
        PERF_FLAG_FD_CLOEXEC,
        _attach_perf_event,
    )

    if ref_ctr_offset >= 1 << 32:
        raise _error(errno_codes.EINVAL, f"semaphore offset {ref_ctr_offset:#x} does not "
                     "fit the uprobe's ref_ctr_offset")
    perf_type, _ = uprobe.pmu_type()
    keep = bsys.Buffers()
    attr = bytearray(PERF_ATTR_SIZE)
    struct.pack_into("<IIQ", attr, 0, perf_type, PERF_ATTR_SIZE,
                     ref_ctr_offset << REF_CTR_OFFSET_SHIFT)
    struct.pack_into("<QQ", attr, 56, keep.cstring_at(path), offset)
    text = f"{path}:{offset:#x}"
    try:
        pfd = bsys.perf_event_open(attr, pid, 0 if pid == -1 else -1, -1,
                                   PERF_FLAG_FD_CLOEXEC)
    except OSError as e:
        raise _error(e.errno, f"prog '{prog.spec.name}': failed to create uprobe '{text}' "
                     f"perf event: {e.strerror}") from e
    try:
        return _attach_perf_event(obj, prog, pfd, f"uprobe {text}", bpf_cookie=bpf_cookie)
    except BaseException:
        _close_quietly(pfd)
        raise
