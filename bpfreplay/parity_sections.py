"""Which part of a trace each call belongs to, for the parity compare: libbpf's load,
its module-BTF walk, its attach, its teardown, or the application's own calls.

Decided from one trace alone (never from the other trace), from what the calls show:
docs/parity.md ("Sections") gives the rules and why none of them can hide a
difference in what libbpf makes. Pure: normalised calls (bpfreplay.compare.normalise)
and the probe labels of bpfreplay.decode.probes in, one section per call out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bpfreplay.uapi import enum_values

LOAD, WALK, ATTACH, TEARDOWN, APPLICATION = "load", "walk", "attach", "teardown", "application"
FOREIGN = "foreign"  # a module-BTF walk's visit of another process's BTF: machine state
LOADER_SECTIONS = (LOAD, WALK, ATTACH, TEARDOWN)

_PERF_TYPE_TRACEPOINT = 2
_PERF_TYPE_MAX = 6  # types from here on are dynamic PMUs (kprobe, uprobe)
_IOC_ENABLE, _IOC_DISABLE, _IOC_SET_BPF = 0x2400, 0x2401, 0x40042408
_MAP_TYPES = enum_values("bpf_map_type")
_PROG_ARRAY = _MAP_TYPES.get("BPF_MAP_TYPE_PROG_ARRAY", -1)
_BPF_F_MMAPABLE = 1 << 10
_MAP_FIXED = 0x10
# LINK_CREATE attach types of the programs libbpf 1.1.2's skeleton attach auto-attaches
# (the attach_* functions of its section table: perf-event based tracepoints, kprobes,
# uprobes and USDTs, fentry/fexit/fmod_ret/lsm/tp_btf through attach_btf_id, iterators,
# kprobe.multi); newer libbpf's multi-uprobes and sessions too.
_AUTO_LINK_TYPES = frozenset(enum_values("bpf_attach_type").get("BPF_" + n, -1) for n in (
    "PERF_EVENT", "TRACE_FENTRY", "TRACE_FEXIT", "MODIFY_RETURN", "LSM_MAC", "TRACE_RAW_TP",
    "TRACE_ITER", "TRACE_KPROBE_MULTI", "TRACE_UPROBE_MULTI", "TRACE_KPROBE_SESSION"))
_TRACE_ITER = enum_values("bpf_attach_type").get("BPF_TRACE_ITER", -1)
# LINK_CREATE options libbpf 1.1.2's auto-attach never passes, by attach type, with the
# value the auto-attach passes instead: attach_iter() calls
# bpf_program__attach_iter(prog, NULL), so no link_info (iter_info, iter_info_len and
# the bytes behind it). (where, field) -> the auto-attach's value (None: absent).
_HAND_OPTIONS: dict[int, dict[tuple[str, str], Any]] = {
    _TRACE_ITER: {("fields", "iter_info"): 0, ("fields", "iter_info_len"): 0,
                  ("in", "iter_info"): None},
}
# The maps of libbpf's USDT manager (usdt.c: __bpf_usdt_specs, __bpf_usdt_ip_to_spec_id,
# as the kernel truncates their names).
_USDT_MAP_PREFIX = "map:__bpf_usdt"


@dataclass
class Visit:
    """One BTF object met by libbpf's load_module_btfs() walk."""

    indices: list[int]  # the calls of the visit, in trace order
    kind: str  # "kernel" (vmlinux, skipped), "module" (kept), "foreign", "ended"
    info: dict[str, Any] = field(default_factory=dict)  # what OBJ_GET_INFO_BY_FD said


@dataclass
class Sections:
    """One section name per call, and the module-BTF walk's visits."""

    of: list[str]
    visits: list[Visit]
    load_end: int  # index of the last call of bpf_object__load() and its skeleton mmaps
    # Attach calls the application made by hand with options libbpf's auto-attach never
    # passes (attach_options), of a program it attached no other way: compared with an
    # auto-attach as the auto-attach would make them (as_auto_attach); the options are
    # shown apart. Marked in a reference trace only.
    hand_options: list[int] = field(default_factory=list)

    def indices(self, *names: str) -> list[int]:
        return [i for i, s in enumerate(self.of) if s in names]

    @property
    def foreign(self) -> int:
        """How many foreign BTF objects the walk went over."""
        return sum(1 for v in self.visits if v.kind == FOREIGN)


def attach_options(item: dict[str, Any]) -> dict[str, Any]:
    """The options of a LINK_CREATE that libbpf 1.1.2's auto-attach never passes for
    its attach type (``_HAND_OPTIONS``: a BPF_TRACE_ITER link with iter_info, which
    only a bpf_program__attach_iter() with opts makes), as ``where.field`` -> value;
    empty when the call carries none of them (the auto-attach's own call)."""
    if item.get("cmd") != "BPF_LINK_CREATE":
        return {}
    options = _HAND_OPTIONS.get((item.get("fields") or {}).get("attach_type"), {})
    found = {f"{where}.{name}": (item.get(where) or {}).get(name)
             for where, name in options}
    if all(found[f"{where}.{name}"] in (default, None) for (where, name), default
           in options.items()):
        return {}
    return {k: v for k, v in found.items() if v is not None}


def as_auto_attach(item: dict[str, Any]) -> dict[str, Any]:
    """A hand attach with options (attach_options) as libbpf's auto-attach of the same
    program makes it: the options set to what the auto-attach passes, every other
    field as the call had it."""
    options = _HAND_OPTIONS.get((item.get("fields") or {}).get("attach_type"), {})
    out = dict(item)
    for (where, name), default in options.items():
        part = dict(out.get(where) or {})
        if default is None:
            part.pop(name, None)
        else:
            part[name] = default
        if part:
            out[where] = part
        else:
            out.pop(where, None)
    return out


def _base(label: Any) -> str:
    return label.rsplit("#", 1)[0] if isinstance(label, str) and "#" in label else ""


def labels_in(value: Any) -> Iterator[str]:
    """Every object label (``kind:name#n``) inside a normalised value."""
    if isinstance(value, str):
        if "#" in value or value.startswith("<mapping of "):
            yield value
        return
    if isinstance(value, dict):
        for v in value.values():
            yield from labels_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from labels_in(v)


def references(item: dict[str, Any]) -> list[str]:
    """The objects a call acts on (not the one it makes)."""
    out: list[str] = []
    for key in ("fields", "args"):
        out.extend(labels_in(item.get(key)))
    for direction in ("in",):
        payload = item.get(direction) or {}
        for k in ("fd_array", "value"):
            out.extend(labels_in(payload.get(k)))
    return out


def made(item: dict[str, Any]) -> str | None:
    ret = item.get("ret")
    return ret if isinstance(ret, str) else None


def _is(item: dict[str, Any], cmd: str) -> bool:
    return item.get("cmd") == cmd


def module_btf_walk(items: list[dict[str, Any]], end: int) -> list[Visit]:
    """The visits of libbpf 1.1.2's load_module_btfs() among calls [0, end]. Per BTF
    id: BTF_GET_NEXT_ID, BTF_GET_FD_BY_ID (ENOENT: the object went away meanwhile),
    OBJ_GET_INFO_BY_FD, then close() at once unless the object is a module's BTF
    (kernel_btf set, not vmlinux: btf_get_from_fd() reads it and the fd is kept). The
    walk ends with GET_NEXT_ID's ENOENT. A visit of a BTF object that is no kernel's
    (kernel_btf 0: another process's) or that went away is foreign."""
    visits: list[Visit] = []
    limit = min(end + 1, len(items))
    i = 0
    while i < limit:
        if not _is(items[i], "BPF_BTF_GET_NEXT_ID"):
            i += 1
            continue
        if items[i].get("errno"):
            visits.append(Visit([i], "ended"))
            i += 1
            continue
        get = i + 1
        if get >= len(items) or not _is(items[get], "BPF_BTF_GET_FD_BY_ID"):
            visits.append(Visit([i], "kernel"))
            i += 1
            continue
        if items[get].get("errno"):
            visits.append(Visit([i, get], FOREIGN))
            i = get + 1
            continue
        fd = made(items[get])
        calls = [i, get]
        info: dict[str, Any] = {}
        after = get + 1
        if after < len(items) and _is(items[after], "BPF_OBJ_GET_INFO_BY_FD") \
                and fd in references(items[after]):
            out = (items[after].get("out") or {}).get("info")
            info = dict(out) if isinstance(out, dict) else {}
            calls.append(after)
            after += 1
        closed = (after < len(items) and items[after]["syscall"] == "close"
                  and items[after]["args"].get("fd") == fd)
        if closed:
            calls.append(after)
        if closed and info.get("kernel_btf") == 0:
            kind = FOREIGN
        elif closed:
            kind = "kernel"
        else:
            kind = "module"
        visits.append(Visit(calls, kind, info))
        i = calls[-1] + 1
    return visits


def _load_end(items: list[dict[str, Any]], probes: list[str | None]) -> int:
    """The last call of bpf_object__load(), and of the skeleton's mmaps after it.

    The load's last object call is its last BPF_PROG_LOAD that is no probe (libbpf
    creates every map before loading any program). A trace without one never got as
    far as its programs: all of it is the load. The run of calls right after it that
    bpf_object_load() and bpf_object__load_skeleton() make belongs to the load as long
    as it is unbroken:
    PROG_BIND_MAP, program-array slots filled (libbpf 1.1.2 init_prog_array_slots():
    any MAP_UPDATE_ELEM of a program array the load made, whatever fd it writes; the
    slots of maps of maps are filled by init_map_in_map_slots() while the maps are
    made, before any program load, so they are load anyway), closes of
    the module BTFs the walk kept, the MAP_FIXED mmaps of BPF_F_MMAPABLE maps of the
    object, and probes."""
    last = -1
    for i, item in enumerate(items):
        if item.get("cmd") == "BPF_PROG_LOAD" and probes[i] is None:
            last = i
    if last < 0:
        return len(items) - 1
    owners = {made(items[i]): i for i in range(last + 1) if made(items[i])}
    map_types: dict[str, Any] = {}
    map_flags: dict[str, Any] = {}
    for i in range(last + 1):
        if _is(items[i], "BPF_MAP_CREATE") and made(items[i]):
            map_types[made(items[i])] = items[i]["fields"].get("map_type")  # type: ignore[index]
            map_flags[made(items[i])] = items[i]["fields"].get("map_flags", 0)  # type: ignore
    end = last
    for i in range(last + 1, len(items)):
        item = items[i]
        if probes[i] is not None:
            end = i
            continue
        syscall = item["syscall"]
        if _is(item, "BPF_PROG_BIND_MAP"):
            end = i
        elif _is(item, "BPF_MAP_UPDATE_ELEM"):
            # bpf_object_init_prog_arrays(): init_prog_array_slots() writes each slot's
            # bpf_program__fd(), whatever it is (-ENOENT for a program not loaded: the
            # kernel's EBADF then fails the load right there). A slot fill is an
            # update of a program array this load made; the value is compared as usual.
            if map_types.get(item["fields"].get("map_fd")) != _PROG_ARRAY:
                break
            end = i
        elif syscall == "close" and _base(item["args"]["fd"]) == "btf_by_id" \
                and item["args"]["fd"] in owners:
            end = i
        elif syscall == "mmap":
            fd = item["args"]["fd"]
            flags = map_flags.get(fd)
            if not (isinstance(flags, int) and flags & _BPF_F_MMAPABLE
                    and item["args"]["flags"] & _MAP_FIXED):
                break
            end = i
        else:
            break
    return end


def _perf_event_by_libbpf(item: dict[str, Any]) -> bool:
    """A perf event libbpf's auto-attach opens: a tracepoint or a kprobe/uprobe PMU
    (dynamic types), for every process (pid -1): libbpf 1.1.2's
    perf_event_open_tracepoint() and perf_event_open_probe() with the pid -1 that
    attach_tp(), attach_kprobe(), attach_uprobe() and attach_usdt() pass. Events of the
    fixed hardware, software, cache, raw and breakpoint types, and events of one
    process, are opened by the application (perf_buffer__new, a profiler, attach by
    hand to one pid)."""
    perf_type = item.get("fields", {}).get("type")
    pid = item.get("args", {}).get("pid")
    return pid == -1 and (perf_type == _PERF_TYPE_TRACEPOINT
                          or (isinstance(perf_type, int) and perf_type >= _PERF_TYPE_MAX))


def _program_name(label: Any) -> str:
    """``prog:handle_tp#1`` -> ``handle_tp`` (empty for a program without a name)."""
    base = _base(label)
    return base.split(":", 1)[1] if base.startswith("prog:") else ""


def _perf_event_programs(items: list[dict[str, Any]], start: int) -> dict[str, Any]:
    """Perf event -> the program first attached to it after ``start`` (a LINK_CREATE
    with the event as target, or PERF_EVENT_IOC_SET_BPF on it)."""
    out: dict[str, Any] = {}
    for item in items[start:]:
        if item.get("cmd") == "BPF_LINK_CREATE":
            target, prog = item["fields"].get("target_fd"), item["fields"].get("prog_fd")
        elif item["syscall"] == "ioctl" and item["args"].get("request") == _IOC_SET_BPF:
            target, prog = item["args"].get("fd"), item["args"].get("arg")
        else:
            continue
        if isinstance(target, str) and target.startswith("perf_event#"):
            out.setdefault(target, prog)
    return out


def classify(items: list[dict[str, Any]], probes: list[str | None] | None = None,
             not_auto_attached: frozenset[str] = frozenset(), *,
             reference: bool = False) -> Sections:
    """The section of each normalised call (docs/parity.md, "Sections").
    ``not_auto_attached``: names of the object's programs libbpf's skeleton attach never
    attaches (bpfreplay.loader.auto_attach, from the object's spec): an attach of one
    of them (its perf event, LINK_CREATE, SET_BPF, ENABLE; its RAW_TRACEPOINT_OPEN) was
    made by hand, by the application. Given for a reference trace only.
    ``reference``: mark the attaches the application made by hand with options libbpf's
    auto-attach never passes (Sections.hand_options): the only attach of its program
    stays an attach, compared without its options; beside another attach of the same
    program it is the application's."""
    probes = probes if probes is not None else [None] * len(items)
    end = _load_end(items, probes)
    of = [LOAD] * len(items)
    visits = module_btf_walk(items, end)
    for visit in visits:
        for i in visit.indices:
            of[i] = FOREIGN if visit.kind == FOREIGN else WALK
    owner: dict[str, str] = {}  # object label -> section of the call that made it
    for i in range(min(end + 1, len(items))):
        label = made(items[i])
        if label is not None:
            owner[label] = LOAD
    prog_made = {made(items[i]) for i in range(min(end + 1, len(items)))
                 if _is(items[i], "BPF_PROG_LOAD") and probes[i] is None}
    by_hand: set[Any] = set()  # perf events the application attached a program to
    if not_auto_attached:
        prog_made = {p for p in prog_made if _program_name(p) not in not_auto_attached}
        by_hand = {event for event, prog in _perf_event_programs(items, end + 1).items()
                   if _program_name(prog) in not_auto_attached}
    for i in range(end + 1, len(items)):
        item = items[i]
        section = _after_load(items, i, probes, owner, prog_made, by_hand)
        of[i] = section
        label = made(item)
        if label is not None:
            owner[label] = section
        if item["syscall"] == "mmap" and isinstance(item.get("ret"), str):
            owner[item["ret"]] = section
    # A probe after the load is run by the attach that needs it (libbpf's lazy
    # kernel_supports()): it belongs with the next call that is no probe.
    following = ATTACH
    for i in range(len(items) - 1, end, -1):
        if probes[i] is None:
            following = of[i] if of[i] in (ATTACH, APPLICATION) else ATTACH
        else:
            of[i] = following
    sections = Sections(of, visits, end)
    if reference:
        _mark_hand_options(items, sections)
    return sections


def _mark_hand_options(items: list[dict[str, Any]], sections: Sections) -> None:
    """A LINK_CREATE of the attach section carrying options libbpf's auto-attach never
    passes was made by the application (bpf_program__attach_iter() with opts). When it
    is its program's only attach, it stands where the skeleton's attach of that
    program would: kept in the attach section, its options marked to be shown apart
    (of several such attaches, the first). Beside an attach of the same program
    without options, the skeleton's, it is an application call."""
    attaches: dict[Any, list[int]] = {}
    for i in range(sections.load_end + 1, len(items)):
        item = items[i]
        if sections.of[i] == ATTACH and item.get("cmd") in ("BPF_LINK_CREATE",
                                                            "BPF_RAW_TRACEPOINT_OPEN"):
            attaches.setdefault(_base(item["fields"].get("prog_fd")), []).append(i)
    for calls in attaches.values():
        hand = [i for i in calls if attach_options(items[i])]
        if hand and len(hand) == len(calls):  # no attach without options: the first
            sections.hand_options.append(hand.pop(0))  # stands for the skeleton's
        for i in hand:
            sections.of[i] = APPLICATION


def _after_load(items: list[dict[str, Any]], i: int, probes: list[str | None],
                owner: dict[str, str], programs: set[str | None],
                by_hand: set[Any] | frozenset[Any] = frozenset()) -> str:
    item = items[i]
    syscall = item["syscall"]
    if probes[i] is not None:
        return ATTACH  # decided in classify(): the section of the attach it serves
    if syscall == "perf_event_open":
        return ATTACH if _perf_event_by_libbpf(item) and made(item) not in by_hand \
            else APPLICATION
    if syscall == "bpf":
        fields = item.get("fields", {})
        cmd = item.get("cmd")
        if cmd == "BPF_RAW_TRACEPOINT_OPEN":
            return ATTACH if fields.get("prog_fd") in programs else APPLICATION
        if cmd == "BPF_LINK_CREATE":
            target = fields.get("target_fd")
            if (fields.get("prog_fd") in programs
                    and fields.get("attach_type") in _AUTO_LINK_TYPES
                    and (not isinstance(target, str) or owner.get(target) == ATTACH)):
                return ATTACH
            return APPLICATION
        if cmd == "BPF_MAP_UPDATE_ELEM" and str(fields.get("map_fd", "")).startswith(
                _USDT_MAP_PREFIX) and owner.get(fields.get("map_fd")) == LOAD:
            # libbpf's USDT manager fills its spec maps right before the uprobes of
            # the attach they serve: the section of that attach.
            for j in range(i + 1, len(items)):
                if items[j]["syscall"] == "perf_event_open":
                    return ATTACH if _perf_event_by_libbpf(items[j]) \
                        and made(items[j]) not in by_hand else APPLICATION
            return APPLICATION
        return APPLICATION
    refs = references(item)
    target = refs[0] if refs else None
    target_owner = owner.get(target) if target is not None else None
    if syscall == "ioctl":
        request = item["args"].get("request")
        if target_owner == ATTACH and request in (_IOC_ENABLE, _IOC_SET_BPF):
            return ATTACH
        if target_owner == ATTACH and request == _IOC_DISABLE:
            return TEARDOWN
        return APPLICATION
    if syscall in ("close", "munmap"):
        return TEARDOWN if target_owner in (LOAD, ATTACH) else APPLICATION
    return APPLICATION
