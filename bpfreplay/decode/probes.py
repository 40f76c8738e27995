"""Name the feature probes in a recorded load, and put every call in a phase.

Before loading an object, libbpf tests the kernel with tiny programs, maps and BTF
blobs (``kernel_supports()`` runs each probe once, lazily, right before the first
thing that needs it; ``bump_rlimit_memlock()`` and ``bpf_object__probe_loading()`` run
first). Probes are recognised here by what they contain, never by where they are: the
order differs between libbpf versions, and a probe only runs when something needs it.

``PROBE_RULES`` is the one table of what each probe looks like. A rule first asks
whether the whole call is the probe's (``probe_calls``: attr size, every field,
instructions, BTF, per libbpf release), then what the fds around it say. Besides
libbpf's internal probes the table names libbpf's public probe API with its arguments
and bpftool's own probes (``public_probes``). A call that only acts
on the fds a probe made (its ``close()``, the PROG_BIND_MAP of the det_bind probe, the
map a probe program reads) belongs to that probe too.

Phases: ``probe``; ``object`` (the object's BTF, maps, their contents, programs,
pins); ``attach`` (perf_event_open, links, attach ioctls); ``runtime`` (lookups and
updates once attached, mmap, queries); ``teardown`` (disable ioctls, detaches,
closes after loading).

Pure: call records in, labels out. Nothing here raises on a malformed record.
"""

from __future__ import annotations

import errno as errno_module
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

from bpfreplay.decode import probe_calls as calls
from bpfreplay.decode import public_probes
from bpfreplay.decode.fds import (
    Call,
    FdCursor,
    FdLife,
    FdTable,
    FdTracker,
    attr_field,
    attr_string,
    buffer,
    command,
)
from bpfreplay.errors import DecodeError
from bpfreplay.uapi import enum_values

PHASES = ("probe", "object", "attach", "runtime", "teardown")


@dataclass(frozen=True, slots=True)
class CallLabel:
    index: int
    phase: str  # one of PHASES
    probe: str | None  # libbpf's name of the feature a probe call tests
    note: str = ""


# ------------------------------------------------------------------ what calls contain

@cache
def _value(enum: str, name: str) -> int:
    return enum_values(enum).get(name, -1)


def _prog_type(call: Call) -> str:
    value = attr_field(call, "prog_type")
    for name, v in enum_values("bpf_prog_type").items():
        if v == value:
            return name.removeprefix("BPF_PROG_TYPE_")
    return str(value)


# The whole call of each probe, per libbpf release (decode/probe_calls.py): what the
# rules below ask first, before any question about the fds around it.


@cache
def _shape(wrapper: str, kind: str | frozenset[int], count: int,
           **fields: Any) -> calls.AttrShape:
    return calls.prog_load_shape(calls.sizes(wrapper), kind, count, **fields)


def _loads(call: Call, shape: calls.AttrShape, program: tuple[calls.Insn, ...]) -> bool:
    return calls.prog_load_is(call, shape, program)


def _returns_zero_as(call: Call, *kinds: str, **fields: Any) -> bool:
    """``r0 = 0; exit`` through bpf_prog_load(), unnamed, of one of these types."""
    return _loads(call, _shape("prog_load", _kinds(kinds), 2, **fields), _RETURNS_ZERO)


@cache
def _kinds(kinds: tuple[str, ...]) -> frozenset[int]:
    return frozenset(calls.prog_type(k) for k in kinds)


_RETURNS_ZERO = calls.returns_zero()


def _memcg_probe(call: Call) -> bool:
    """probe_memcg_account(): its own attr (offsetofend attach_btf_obj_fd, 1.5+:
    prog_token_fd), SOCKET_FILTER, ``call ktime_get_coarse_ns; exit``, no log."""
    return _loads(call, _shape("memcg_probe", "SOCKET_FILTER", 2),
                  calls.calls_helper("ktime_get_coarse_ns"))


@cache
def _cookie_shapes() -> tuple[calls.AttrShape, ...]:
    # KPROBE up to libbpf 1.3, TRACEPOINT from 1.4; through bpf_prog_load, no log.
    return tuple(dict.fromkeys(
        calls.prog_load_shape((r.prog_load,), r.cookie_prog_type, 2)
        for r in calls.releases()))


def _cookie_probe(call: Call) -> bool:
    program = _cookie_program()
    # The instructions once, then each release's attr (asked on every PROG_LOAD).
    return calls.insns_are(call, program) and any(
        _loads(call, shape, program) for shape in _cookie_shapes())


@cache
def _cookie_program() -> tuple[calls.Insn, ...]:
    return calls.calls_helper("get_attach_cookie")


def _probe_read_kernel_shape(call: Call) -> bool:
    """r1 = r10; r1 += -8; r2 = 8; r3 = 0; call probe_read_kernel; exit (TRACEPOINT)."""
    return _loads(call, _shape("prog_load", "TRACEPOINT", 6), calls.read_kernel_onto_stack())


def _map_value_store_shape(call: Call) -> bool:
    """r1 = map_value(fd) + 16; *(u64 *)(r1 + 0) = 42; r0 = 0; exit (SOCKET_FILTER)."""
    return _loads(call, _shape("prog_load", "SOCKET_FILTER", 5), calls.map_value_store())


@cache
def _full_range_shapes() -> tuple[calls.AttrShape, ...]:
    # probe_ldimm64_full_range_off (1.7): named "global_reloc"; log_buf in the opts with
    # log_level 0, so the first load has no log and a failed one is retried with level 1.
    name = {"prog_name": b"global_reloc"}
    return (calls.prog_load_shape(calls.sizes("prog_load"), "SOCKET_FILTER", 3, **name),
            calls.prog_load_shape(calls.sizes("prog_load"), "SOCKET_FILTER", 3, **name,
                                  log_level=1, log_size=1024, log_buf=calls.POINTER))


def _huge_map_value_offset(call: Call) -> bool:
    """r1 = map_value(fd) + (1 << 30); exit: meant to be refused by the verifier."""
    program = (calls.insn(calls.LD_IMM64, 1, calls.PSEUDO_MAP_VALUE, imm=None),
               calls.insn(0, imm=1 << 30), calls.insn(calls.EXIT))
    return any(_loads(call, shape, program) for shape in _full_range_shapes())


@cache
def _name_probe_shapes() -> tuple[calls.AttrShape, ...]:
    # probe_kern_prog_name: its own attr (offsetofend prog_name; 1.5+: prog_token_fd)
    # named "libbpf_nametest"; libbpf 0.8 went through bpf_prog_load as "test".
    new = calls.prog_load_shape(calls.sizes("name_probe"), "SOCKET_FILTER", 2,
                                prog_name=b"libbpf_nametest")
    old = calls.prog_load_shape([r.prog_load for r in calls.releases()
                                 if r.name_probe is None], "SOCKET_FILTER", 2,
                                prog_name=b"test")
    return new, old


@cache
def _probe_map_shape(value_size: int, flags: int, names: tuple[bytes, ...]
                     ) -> tuple[calls.AttrShape, ...]:
    """An ARRAY of 4-byte keys, one entry, through bpf_map_create(): named (1.0+, when
    the kernel takes names) or not."""
    base = {"map_type": calls.value("bpf_map_type", "BPF_MAP_TYPE_ARRAY"), "key_size": 4,
            "value_size": value_size, "max_entries": 1, "map_flags": flags}
    return tuple(calls.AttrShape("BPF_MAP_CREATE", calls.sizes("map_create"),
                                 {**base, "map_name": name}) for name in names)


def _probe_map(call: Call, value_size: int, flags: int, name: str) -> bool:
    return any(shape.matches(call) for shape in _probe_map_shape(
        value_size, flags, (name.encode(), b"")))


def _named_probe_map(call: Call, value_size: int, flags: int, name: str) -> bool:
    return any(shape.matches(call) for shape in _probe_map_shape(
        value_size, flags, (name.encode(),)))


def _btf_is(name: str) -> Callable[[Context, Call], bool]:
    """The BTF blob of libbpf's probe ``name``, loaded through bpf_btf_load() without a
    log (libbpf__load_raw_btf)."""
    return lambda ctx, call: calls.btf_is(call, name)


def _named(field: str, name: str) -> Callable[[Context, Call], bool]:
    return lambda ctx, call: attr_string(call, field) == name


class Context:
    """What rules may look at besides the call: the fds and the labels found so far.

    Rules ask only ``users(call)`` and ``creator(call, what)``; the streaming first pass
    answers the same two questions from what it holds (``_StreamRules``)."""

    def __init__(self, tracker: FdTracker | FdCursor) -> None:
        self.fds = tracker
        self.probes: dict[int, str] = {}

    def users(self, call: Call) -> list[Call]:
        """Calls other than close() that read the fd this call made."""
        return [u for u in self.fds.users(call["index"]) if u.get("syscall") != "close"]

    def creator(self, call: Call, what: str) -> Call | None:
        """The call that made the fd in field ``what`` of this call."""
        return self.fds.creator(self.fds.reference(call["index"], what))


@cache
def _link_shapes() -> tuple[calls.AttrShape, calls.AttrShape]:
    """bpf_link_create(prog, -1, type, NULL): offsetofend(union bpf_attr, link_create)."""
    def shape(kind: str, **fields: Any) -> calls.AttrShape:
        return calls.AttrShape("BPF_LINK_CREATE", calls.sizes("link_create"), {
            "prog_fd": calls.FD, "target_fd": 0xFFFFFFFF,
            "attach_type": calls.attach_type(kind), **fields})
    return (shape("PERF_EVENT"),
            # probe_uprobe_multi_link (1.3+): path "/", one offset; 1.5+ again, pid -1
            shape("TRACE_UPROBE_MULTI", **{
                "uprobe_multi.path": calls.POINTER, "uprobe_multi.offsets": calls.POINTER,
                "uprobe_multi.cnt": 1, "uprobe_multi.pid": frozenset({0, 0xFFFFFFFF})}))


def _links_to_nothing(ctx: Context, call: Call) -> bool:
    """LINK_CREATE(BPF_PERF_EVENT) with target_fd -1 (probe_perf_link)."""
    return _link_shapes()[0].matches(call)


def _uprobe_multi_on_root(ctx: Context, call: Call) -> bool:
    """LINK_CREATE(BPF_TRACE_UPROBE_MULTI) of the path "/"."""
    return _link_shapes()[1].matches(call) and buffer(call, "uprobe_multi.path") == b"/"


def _perf_link_prog(ctx: Context, call: Call) -> bool:
    return _returns_zero_as(call, "TRACEPOINT") and any(
        command(u) == "BPF_LINK_CREATE" and _links_to_nothing(ctx, u) for u in ctx.users(call))


def _uprobe_multi_prog(ctx: Context, call: Call) -> bool:
    eat = calls.attach_type("TRACE_UPROBE_MULTI")
    return (_returns_zero_as(call, "KPROBE", expected_attach_type=eat)
            and any(command(u) == "BPF_LINK_CREATE" and _uprobe_multi_on_root(ctx, u)
                    for u in ctx.users(call)))


def _det_bind_map(ctx: Context, call: Call) -> bool:
    """The map of the PROG_BIND_MAP probe: "libbpf_det_bind", or (before libbpf 1.0, or
    on kernels without names) an unnamed 4/32/1 array that only PROG_BIND_MAP uses."""
    if _named_probe_map(call, 32, 0, "libbpf_det_bind"):
        return True
    if not _probe_map(call, 32, 0, ""):
        return False
    users = ctx.users(call)
    return bool(users) and all(command(u) == "BPF_PROG_BIND_MAP" for u in users)


def _global_data_map(ctx: Context, call: Call) -> bool:
    return _named_probe_map(call, 32, 0, "libbpf_global")


def _mmap_map(ctx: Context, call: Call) -> bool:
    """"libbpf_mmap", or unnamed and unused: a 4/4/1 BPF_F_MMAPABLE array."""
    mmapable = _value("bpf_map_flags", "BPF_F_MMAPABLE")
    if _named_probe_map(call, 4, mmapable, "libbpf_mmap"):
        return True
    return _probe_map(call, 4, mmapable, "") and not ctx.users(call)


def _name_probe_prog(ctx: Context, call: Call) -> bool:
    """``r0 = 0; exit`` named "libbpf_nametest" (libbpf 0.8: "test", unused)."""
    new, old = _name_probe_shapes()
    program = calls.returns_zero()
    if _loads(call, new, program):
        return True
    return _loads(call, old, program) and not ctx.users(call)


def _det_bind_prog(ctx: Context, call: Call) -> bool:
    if not _returns_zero_as(call, "SOCKET_FILTER"):
        return False
    for user in ctx.users(call):
        if command(user) == "BPF_PROG_BIND_MAP":
            map_call = ctx.creator(user, "map_fd")
            if map_call is not None and _det_bind_map(ctx, map_call):
                return True
    return False


def _global_data_prog(ctx: Context, call: Call) -> bool:
    return _map_value_store_shape(call)


def _exp_attach_type_prog(ctx: Context, call: Call) -> bool:
    eat = calls.attach_type("CGROUP_INET_SOCK_CREATE")
    return _returns_zero_as(call, "CGROUP_SOCK", expected_attach_type=eat)


def _loading_prog(ctx: Context, call: Call) -> bool:
    return _returns_zero_as(call, "SOCKET_FILTER", "TRACEPOINT") and not ctx.users(call)


def _int_only_btf(ctx: Context, call: Call) -> bool:
    return calls.btf_is(call, "btf") and not _btf_name_queried(ctx, call)


def _btf_name_queried(ctx: Context, call: Call) -> bool:
    return any(command(u) == "BPF_OBJ_GET_INFO_BY_FD" for u in ctx.users(call))


def _arg_ctx_btf(ctx: Context, call: Call) -> bool:
    shape = _btf_shape(call)
    return (calls.btf_load_shape().matches(call) and shape is not None
            and ("DECL_TAG", "arg:ctx", 0) in shape
            and any(attr_string(u, "prog_name") == "det_arg_ctx" for u in ctx.users(call)))


def _btf_shape(call: Call) -> tuple[tuple[str, str, int], ...] | None:
    """The loaded BTF as (kind, name, linkage) per type; None if it does not parse or
    is too large to be a probe's (at most seven small types)."""
    from bpfreplay.decode.btf import parse_header

    blob = buffer(call, "btf")
    try:
        if parse_header(blob).type_len > 256:
            return None
    except DecodeError:
        return None
    return _parse_shape(blob)


@lru_cache(maxsize=256)
def _parse_shape(blob: bytes) -> tuple[tuple[str, str, int], ...] | None:
    from bpfreplay.decode.btf import parse_btf

    try:
        btf = parse_btf(blob)
    except DecodeError:
        return None
    return tuple((t.kind_name, t.name, t.linkage) for t in btf.types)


_SYSCALL_BPF = re.compile(rb"__[a-z0-9]+_sys_bpf")


def _kprobe_on_sys_bpf(ctx: Context, call: Call) -> bool:
    return bool(_SYSCALL_BPF.fullmatch(buffer(call, "config1")))


def _succeeded(call: Call) -> bool | None:
    ret = call.get("ret")
    return ret >= 0 if isinstance(ret, int) else None


def _failed_with(call: Call, error: int) -> bool | None:
    if not isinstance(call.get("ret"), int):
        return None
    return call.get("ret") == -1 and call.get("errno") == error


def _uprobe_multi_verdict(call: Call) -> bool | None:
    # The second call passes pid -1: kernels with fixed pid filtering answer EINVAL.
    if attr_field(call, "uprobe_multi.pid") == 0xFFFFFFFF:
        return _failed_with(call, errno_module.EINVAL)
    return _failed_with(call, errno_module.EBADF)


def _log(call: Call) -> bytes | None:
    log = call.get("out", {}).get("log_buf") if isinstance(call.get("out"), dict) else None
    return bytes(log) if isinstance(log, bytes | bytearray) else None


def _full_range_verdict(call: Call) -> bool | None:
    log = _log(call)
    if log is None:
        return None
    if b"direct value offset of" in log:
        return False
    return True if b"invalid access to map value pointer" in log else None


_HELPER_REFUSED = (b"invalid func ", b"unknown func ", b"program of this type cannot use helper ")


def _helper_verdict(call: Call) -> bool | None:
    """libbpf_probe_bpf_helper: a load that fails says no only when the verifier's log
    names the helper as unknown; any other failure counts as supported."""
    if _succeeded(call):
        return True
    log = _log(call)
    if log is None:
        return None
    return not any(words in log for words in _HELPER_REFUSED)


def _bpftool_verdict(call: Call) -> bool | None:
    """probe_bpf_syscall: any answer but ENOSYS means bpf() exists;
    probe_misc_feature: the program loads."""
    if public_probes.bpftool_probe(call) == "bpftool:probe_bpf_syscall":
        return None if call.get("ret") is None else call.get("errno") != errno_module.ENOSYS
    return _succeeded(call)


# ------------------------------------------------------------------------ the table


@dataclass(frozen=True, slots=True)
class ProbeRule:
    probe: str  # libbpf's feature name (FEAT_PROG_NAME -> "prog_name"), or the API's
    call: str  # the bpf command (or syscall) the rule looks at
    shape: str  # what the call looks like, in words
    matches: Callable[[Context, Call], bool]
    note: str = ""
    # Did the kernel say yes? (None: this call alone does not tell.)
    supported: Callable[[Call], bool | None] = lambda call: _succeeded(call)
    # The label, when it carries the call's arguments (the public probe API's).
    name: Callable[[Call], str | None] | None = None
    source: str = "libbpf"  # whose probe: "libbpf" (kernel_supports), "libbpf API", "bpftool"
    # The label from the calls around it (a part of a probe named after the whole).
    context_name: Callable[[Context, Call], str | None] | None = None

    def label(self, ctx: Context, call: Call) -> str:
        named = self.name(call) if self.name is not None else None
        if named is None and self.context_name is not None:
            named = self.context_name(ctx, call)
        return named or self.probe


class _Public:
    """A rule's matcher that is its name: a public probe API call is the probe when
    ``find`` names it (``_match_label`` asks ``find`` once for both)."""

    __slots__ = ("find",)

    def __init__(self, find: Callable[[Call], str | None]) -> None:
        self.find = find

    def __call__(self, ctx: Context, call: Call) -> bool:
        return self.find(call) is not None


def _public(find: Callable[[Call], str | None]) -> Callable[[Context, Call], bool]:
    return _Public(find)


def _map_probe_using(ctx: Context, call: Call) -> str | None:
    """The map-type probe whose map reads this call's fd (its inner map, its BTF)."""
    for user in ctx.users(call):
        name = public_probes.map_type_probe(user)
        if name is not None:
            return name
    return None


def _inner_map(ctx: Context, call: Call) -> bool:
    """probe_map_create()'s inner map (unnamed HASH 4/4/1) of a map-in-map probe."""
    return public_probes.inner_map_of_probe(call) and any(
        command(u) == "BPF_MAP_CREATE" and public_probes.map_type_probe(u) is not None
        for u in ctx.users(call))


_API = "libbpf API"

# First match wins; rules for one call are tried top to bottom. Features libbpf tests
# with several calls have one rule per call; the calls that only act on a probe's fds
# (close, PROG_BIND_MAP of the det_bind map, the map a probe program reads) follow the
# probe without a rule of their own. A rule asks ``ctx.users()`` last, once the call's
# own content says it may be a probe: the streaming form can only answer it when the
# fd is closed, and keeps the users' records until then. Every rule first checks the
# whole call (decode/probe_calls.py): size, every attr field, instructions, BTF.
PROBE_RULES: tuple[ProbeRule, ...] = (
    # -- BPF_PROG_LOAD: kernel_supports() probes
    ProbeRule("prog_name", "BPF_PROG_LOAD", 'r0 = 0; exit named "libbpf_nametest" ("test")',
              _name_probe_prog, "can programs and maps have names"),
    ProbeRule("arg_ctx_tag", "BPF_PROG_LOAD", 'program "det_arg_ctx" with func_info',
              _named("prog_name", "det_arg_ctx"), "kernel-side __arg_ctx tag (libbpf >= 1.4)"),
    ProbeRule("memcg_account", "BPF_PROG_LOAD",
              "call ktime_get_coarse_ns; exit, probe_memcg_account's own attr size",
              lambda ctx, c: _memcg_probe(c),
              "memcg accounting: if it loads, libbpf leaves RLIMIT_MEMLOCK alone"),
    ProbeRule("bpf_cookie", "BPF_PROG_LOAD", "call get_attach_cookie; exit, no log",
              lambda ctx, c: _cookie_probe(c), "bpf_get_attach_cookie()"),
    ProbeRule("probe_read_kern", "BPF_PROG_LOAD", "6 instructions calling probe_read_kernel",
              lambda ctx, c: _probe_read_kernel_shape(c), "bpf_probe_read_kernel() helper"),
    ProbeRule("global_data", "BPF_PROG_LOAD",
              "ld_imm64 of a map value +16, store 42 there (the libbpf_global map)",
              _global_data_prog, "global variables (ld_imm64 of a map value)"),
    ProbeRule("ldimm64_full_range_off", "BPF_PROG_LOAD", "ld_imm64 of a map value + 1<<30",
              lambda ctx, c: _huge_map_value_offset(c),
              "full-range map value offsets (libbpf >= 1.7): refused either way, "
              "the verifier log tells which", supported=lambda c: _full_range_verdict(c)),
    ProbeRule("exp_attach_type", "BPF_PROG_LOAD",
              "r0 = 0; exit as CGROUP_SOCK with expected_attach_type INET_SOCK_CREATE",
              _exp_attach_type_prog, "BPF_PROG_LOAD's expected_attach_type"),
    ProbeRule("uprobe_multi_link", "BPF_PROG_LOAD",
              "r0 = 0; exit for TRACE_UPROBE_MULTI, linked to \"/\"", _uprobe_multi_prog,
              "multi-uprobe links (libbpf >= 1.3)"),
    ProbeRule("perf_link", "BPF_PROG_LOAD",
              "r0 = 0; exit as TRACEPOINT, then linked to perf event fd -1", _perf_link_prog,
              "the program of the perf link probe"),
    ProbeRule("prog_bind_map", "BPF_PROG_LOAD",
              "r0 = 0; exit, then bound to the libbpf_det_bind map", _det_bind_prog,
              "the program of the BPF_PROG_BIND_MAP probe"),
    ProbeRule("probe_loading", "BPF_PROG_LOAD",
              "r0 = 0; exit (SOCKET_FILTER, TRACEPOINT if that fails), unnamed, unused",
              _loading_prog, "bpf_object__probe_loading(): can anything load at all"),
    # -- BPF_PROG_LOAD: the public probe API, bpftool's own probes
    ProbeRule("libbpf_probe_bpf_helper", "BPF_PROG_LOAD",
              "call <helper>; exit with a 4096-byte verifier log",
              _public(public_probes.helper_probe),
              "can this program type call this helper (the verifier's log tells)",
              supported=_helper_verdict, name=public_probes.helper_probe, source=_API),
    ProbeRule("libbpf_probe_bpf_prog_type", "BPF_PROG_LOAD",
              "r0 = 0; exit of the type (with what probe_prog_load sets for it)",
              _public(public_probes.prog_type_probe), "can programs of this type load",
              name=public_probes.prog_type_probe, source=_API),
    ProbeRule("bpf_probe_large_insn_limit", "BPF_PROG_LOAD",
              "SCHED_CLS, 4096 x r0 = 1; exit (libbpf 0.x)",
              _public(public_probes.libbpf_0x_probe), "programs over 4096 instructions",
              source=_API),
    ProbeRule("bpftool", "BPF_PROG_LOAD",
              "SOCKET_FILTER programs of bpftool feature probe's misc section, or an "
              "empty load (probe_bpf_syscall)", _public(public_probes.bpftool_probe),
              "bpftool feature probe's own test", name=public_probes.bpftool_probe,
              supported=lambda c: _bpftool_verdict(c), source="bpftool"),
    # -- BPF_MAP_CREATE
    ProbeRule("global_data", "BPF_MAP_CREATE", 'array map "libbpf_global"',
              _global_data_map, "the map of the global variables probe"),
    ProbeRule("array_mmap", "BPF_MAP_CREATE", 'array map "libbpf_mmap" with BPF_F_MMAPABLE',
              _mmap_map, "mmap()able array maps"),
    ProbeRule("prog_bind_map", "BPF_MAP_CREATE", 'array map "libbpf_det_bind"',
              _det_bind_map, "the map of the BPF_PROG_BIND_MAP probe"),
    ProbeRule("libbpf_probe_bpf_map_type", "BPF_MAP_CREATE",
              "unnamed HASH 4/4/1, the inner map of a map-in-map type's probe", _inner_map,
              "the inner map of a map-in-map probe",
              context_name=_map_probe_using, source=_API),
    ProbeRule("libbpf_probe_bpf_map_type", "BPF_MAP_CREATE",
              "unnamed map of the type, with what probe_map_create sets for it",
              _public(public_probes.map_type_probe), "can maps of this type be created",
              name=public_probes.map_type_probe, source=_API),
    # -- BPF_BTF_LOAD
    ProbeRule("btf", "BPF_BTF_LOAD", "one INT 'int'", _int_only_btf, "minimal BTF"),
    ProbeRule("module_btf", "BPF_BTF_LOAD", "one INT 'int', then asked for its name",
              lambda ctx, c: calls.btf_is(c, "btf") and _btf_name_queried(ctx, c),
              "module BTF (name in bpf_btf_info)"),
    ProbeRule("btf_func", "BPF_BTF_LOAD", "INT, FUNC_PROTO, static FUNC 'x'",
              _btf_is("btf_func"), "BTF functions"),
    ProbeRule("btf_global_func", "BPF_BTF_LOAD", "INT, FUNC_PROTO, global FUNC 'x'",
              _btf_is("btf_global_func"), "BTF global functions"),
    ProbeRule("btf_datasec", "BPF_BTF_LOAD", "INT, VAR 'x', DATASEC '.data'",
              _btf_is("btf_datasec"), "BTF data sections and variables"),
    ProbeRule("btf_qmark_datasec", "BPF_BTF_LOAD", "INT, VAR 'x', DATASEC '?.data'",
              _btf_is("btf_qmark_datasec"), "DATASEC names starting with '?' (libbpf >= 1.4)"),
    ProbeRule("btf_float", "BPF_BTF_LOAD", "one FLOAT 'float'", _btf_is("btf_float"),
              "BTF_KIND_FLOAT"),
    ProbeRule("btf_decl_tag", "BPF_BTF_LOAD", "INT, VAR 'tag', DECL_TAG 'tag'",
              _btf_is("btf_decl_tag"), "BTF_KIND_DECL_TAG"),
    ProbeRule("btf_type_tag", "BPF_BTF_LOAD", "INT, TYPE_TAG 'tag', PTR",
              _btf_is("btf_type_tag"), "BTF_KIND_TYPE_TAG"),
    ProbeRule("btf_enum64", "BPF_BTF_LOAD", "one ENUM64 'enum64'", _btf_is("btf_enum64"),
              "BTF_KIND_ENUM64"),
    ProbeRule("arg_ctx_tag", "BPF_BTF_LOAD", "FUNCs with a DECL_TAG 'arg:ctx'", _arg_ctx_btf,
              "the BTF of the __arg_ctx probe"),
    ProbeRule("libbpf_probe_bpf_map_type", "BPF_BTF_LOAD",
              "struct bpf_spin_lock and struct val (load_local_storage_btf)",
              _btf_is("local_storage"), "the BTF of a local-storage map type's probe",
              context_name=_map_probe_using, source=_API),
    # -- BPF_LINK_CREATE
    ProbeRule("perf_link", "BPF_LINK_CREATE", "BPF_PERF_EVENT link to target_fd -1",
              _links_to_nothing,
              "expected to fail: EBADF on kernels with perf links, EINVAL without",
              supported=lambda c: _failed_with(c, errno_module.EBADF)),
    ProbeRule("uprobe_multi_link", "BPF_LINK_CREATE", 'TRACE_UPROBE_MULTI link on "/"',
              _uprobe_multi_on_root,
              "expected to fail: EBADF on kernels with multi-uprobes (then EINVAL for pid -1)",
              supported=lambda c: _uprobe_multi_verdict(c)),
    # -- perf_event_open
    ProbeRule("syscall_wrapper", "perf_event_open", "kprobe on __<arch>_sys_bpf",
              _kprobe_on_sys_bpf, "does the kernel name syscalls __<arch>_sys_*"),
)


# ------------------------------------------------------------------------ phases

_OBJECT_COMMANDS = frozenset({
    "BPF_PROG_LOAD", "BPF_MAP_CREATE", "BPF_BTF_LOAD", "BPF_MAP_FREEZE", "BPF_PROG_BIND_MAP",
    "BPF_OBJ_PIN", "BPF_OBJ_GET", "BPF_TOKEN_CREATE",
})
_LOADING_COMMANDS = frozenset({"BPF_PROG_LOAD", "BPF_MAP_CREATE", "BPF_BTF_LOAD"})
_ATTACH_COMMANDS = frozenset({
    "BPF_LINK_CREATE", "BPF_RAW_TRACEPOINT_OPEN", "BPF_PROG_ATTACH", "BPF_LINK_UPDATE",
})
_TEARDOWN_COMMANDS = frozenset({"BPF_PROG_DETACH", "BPF_LINK_DETACH"})
_MAP_WRITES = frozenset({"BPF_MAP_UPDATE_ELEM", "BPF_MAP_DELETE_ELEM", "BPF_MAP_UPDATE_BATCH",
                         "BPF_MAP_DELETE_BATCH"})
# PERF_EVENT_IOC_ENABLE, _DISABLE, _SET_BPF.
_IOC_ENABLE, _IOC_DISABLE, _IOC_SET_BPF = 0x2400, 0x2401, 0x40042408
_SO_ATTACH_BPF, _SO_DETACH_BPF = 50, 27


class _Timeline:
    """Per process: where loading ends and attaching starts (non-probe calls)."""

    def __init__(self, last_load: dict[int, int], first_attach: dict[int, int]) -> None:
        self.last_load = last_load  # pid -> index of its last object load
        self.first_attach = first_attach  # pid -> index of its first attach

    @classmethod
    def of(cls, calls: list[Call], probes: dict[int, str]) -> _Timeline:
        last_load: dict[int, int] = {}
        first_attach: dict[int, int] = {}
        for call in calls:
            index, pid = call["index"], _pid(call)
            if index in probes:
                continue
            if command(call) in _LOADING_COMMANDS:
                last_load[pid] = index
            if _attach_call(call) and pid not in first_attach:
                first_attach[pid] = index
        return cls(last_load, first_attach)

    def loading(self, call: Call) -> bool:
        """Still loading: before the process's last object load and its first attach."""
        pid = _pid(call)
        return (call["index"] < self.last_load.get(pid, -1)
                and call["index"] < self.first_attach.get(pid, 1 << 62))

    def attached(self, call: Call) -> bool:
        return call["index"] > self.first_attach.get(_pid(call), 1 << 62)


def _pid(call: Call) -> int:
    pid = call.get("pid")
    return pid if isinstance(pid, int) else 0


def _arg(call: Call, i: int) -> int:
    args = call.get("args")
    value = args[i] if isinstance(args, list | tuple) and i < len(args) else 0
    return value if isinstance(value, int) else 0


def _attach_call(call: Call) -> bool:
    syscall = call.get("syscall")
    if syscall == "bpf":
        return command(call) in _ATTACH_COMMANDS
    if syscall == "perf_event_open":
        return True
    if syscall == "ioctl":
        return _arg(call, 1) & 0xFFFFFFFF in (_IOC_ENABLE, _IOC_SET_BPF)
    if syscall == "setsockopt":
        return _arg(call, 2) == _SO_ATTACH_BPF
    return False


def _phase(call: Call, ctx: Context, timeline: _Timeline) -> str:
    if "stack" in call:  # record --stack: the libbpf function that made the call says
        from bpfreplay.decode.stack import api_function, api_phase

        phase = api_phase(api_function(call["stack"]))
        if phase is not None:
            return phase
    syscall = call.get("syscall")
    if _attach_call(call):
        return "attach"
    if syscall == "bpf":
        name = command(call)
        if name in _OBJECT_COMMANDS:
            return "object"
        if name in _TEARDOWN_COMMANDS:
            return "teardown"
        if name in _MAP_WRITES:
            made_here = ctx.creator(call, "map_fd") is not None
            return "object" if made_here and not timeline.attached(call) else "runtime"
        return "object" if timeline.loading(call) else "runtime"
    if syscall == "close":
        made_by = ctx.creator(call, "fd")
        if made_by is not None and (command(made_by) in _ATTACH_COMMANDS
                                    or made_by.get("syscall") == "perf_event_open"):
            return "teardown"
        return "object" if timeline.loading(call) else "teardown"
    if syscall == "ioctl":
        return "teardown" if _arg(call, 1) & 0xFFFFFFFF == _IOC_DISABLE else "runtime"
    if syscall == "setsockopt" and _arg(call, 2) == _SO_DETACH_BPF:
        return "teardown"
    if syscall == "munmap":
        return "teardown"
    if syscall in ("dup", "dup2", "dup3", "fcntl", "memfd_create"):
        return "object" if timeline.loading(call) else "runtime"
    return "runtime"  # mmap, and anything else a process does with its objects


# ------------------------------------------------------------------------ labelling


def _rules_for(call: Call) -> tuple[ProbeRule, ...]:
    key = command(call) or call.get("syscall") or ""
    return _RULES_BY_CALL.get(key, ())


_RULES_BY_CALL: dict[str, tuple[ProbeRule, ...]] = {}
for _rule in PROBE_RULES:
    _RULES_BY_CALL[_rule.call] = (*_RULES_BY_CALL.get(_rule.call, ()), _rule)


def _match_label(ctx: Context | _StreamRules, call: Call) -> tuple[ProbeRule, str] | None:
    """``_match_rule`` and that rule's label: a rule whose matcher is its name (the public
    probe API's) names the call once, not once to match and again to label."""
    for rule in _rules_for(call):
        matches = rule.matches
        if type(matches) is _Public and rule.name is matches.find:
            named = matches.find(call)
            if named is not None:
                return rule, named  # ProbeRule.label: the name, when there is one
        elif matches(ctx, call):  # type: ignore[arg-type]  # same questions answered
            return rule, rule.label(ctx, call)  # type: ignore[arg-type]
    return None


def _match_rule(ctx: Context | _StreamRules, call: Call) -> ProbeRule | None:
    """The first rule of the table the call matches."""
    for rule in _rules_for(call):
        if rule.matches(ctx, call):  # type: ignore[arg-type]  # same questions answered
            return rule
    return None


def _errno_name(value: object) -> str:
    return errno_module.errorcode.get(value, str(value)) if isinstance(value, int) else "?"


def _outcome(call: Call, rule: ProbeRule) -> str:
    """The note of a probe call: what it tests, and what the kernel's answer means."""
    verdict = rule.supported(call)
    answer = f"failed with {_errno_name(call.get('errno'))}" if call.get("ret") == -1 \
        else "succeeded"
    if verdict is None:
        return f"{rule.note} ({answer})"
    return f"{rule.note} ({answer}: {'supported' if verdict else 'not supported'})"


def _sole_probe(owners: Iterable[str | None]) -> str | None:
    """The probe when every owner is that one probe; None if any is no probe, they
    differ, or there are none."""
    names = set(owners)
    return next(iter(names)) if len(names) == 1 and None not in names else None


def _follow_probe(ctx: Context, call: Call) -> str | None:
    """The probe whose fds this call acts on (all of them), or whose probe calls are the
    only users of the fd this call made."""
    tracker = ctx.fds
    index = call["index"]
    refs = tracker.references(index)
    if refs:
        probe = _sole_probe(ctx.probes.get(life.root.created) for _, life in refs)
        if probe is not None:
            return probe
    if tracker.created_by(index) is not None:
        probe = _sole_probe(ctx.probes.get(u["index"]) for u in ctx.users(call))
        if probe is not None:
            return probe
    return None


def _closed_kind(ctx: Context | _StreamRules, call: Call) -> str | None:
    """What a close() closes ("map", "program", "fd"); None for other calls."""
    if call.get("syscall") != "close":
        return None
    made_by = ctx.creator(call, "fd")
    return _KIND_OF.get(command(made_by) or "", "fd") if made_by else "fd"


def _follow_note(closed: str | None, probe: str) -> str:
    if closed is not None:
        return f"closes the {probe} probe's {closed}"
    return f"part of the {probe} probe"


_KIND_OF = {"BPF_PROG_LOAD": "program", "BPF_MAP_CREATE": "map", "BPF_BTF_LOAD": "BTF",
            "BPF_LINK_CREATE": "link"}


class _LoadingProbes:
    """``r0 = 0; exit`` unnamed and unused is, by its bytes alone, any of three things:
    bpf_object__probe_loading(), libbpf_probe_bpf_prog_type(SOCKET_FILTER or
    TRACEPOINT), or (at 144 bytes, sizeof(union bpf_attr) of its headers) bpftool's
    own known_to_need_rlimit() (bpftool 7.1 common.c, a raw bpf() call). What else the
    same process did tells them apart: a process that probes program types through the
    public API made this one that way too, and a size its libbpf never passes (as its
    other probes show) is not libbpf's. Both label forms settle them at the end."""

    def __init__(self) -> None:
        self.sizes: dict[int, set[int]] = {}  # pid -> bpf_prog_load sizes its probes pass
        self.public: set[int] = set()  # pids probing program types via the public API
        self.loading: dict[int, tuple[int, int, str]] = {}  # index -> pid, size, type
        self.position: dict[int, int] = {}  # index -> position (the streaming form's)
        self.follow_pid: dict[int, int] = {}  # index -> pid of probe_loading follow-ups

    def matched(self, call: Call, rule: ProbeRule, position: int = 0) -> None:
        pid = _pid(call)
        if rule.probe == "probe_loading":
            self.loading[call["index"]] = (pid, call.get("size") or 0, _prog_type(call))
            self.position[call["index"]] = position
        elif command(call) == "BPF_PROG_LOAD" and rule.probe not in _OWN_ATTR_PROBES \
                and isinstance(call.get("size"), int):
            self.sizes.setdefault(pid, set()).add(call["size"])
            # Only a type no internal probe loads says so (a SOCKET_FILTER or
            # TRACEPOINT r0 = 0 may be libbpf's own, used by a call no rule knows).
            if rule.probe == "libbpf_probe_bpf_prog_type" \
                    and _prog_type(call) not in ("SOCKET_FILTER", "TRACEPOINT"):
                self.public.add(pid)

    def followed(self, index: int, pid: int, probe: str) -> None:
        if probe == "probe_loading":
            self.follow_pid[index] = pid

    def resolve(self, probes: dict[int, str], notes: dict[int, str]) -> list[int]:
        """Rename the loading probes in ``probes`` and ``notes``; the indices of those
        that turn out to be no label (their loads first), for the caller to drop."""
        current: dict[int, str | None] = {}  # pid -> the name of its last loading probe
        dropped: list[int] = []
        for index in sorted(set(self.loading) | set(self.follow_pid)):
            if probes.get(index) != "probe_loading":
                continue
            name: str | None
            if index in self.loading:
                pid, size, kind = self.loading[index]
                name = self._name(pid, size, kind)
                current[pid] = name
                if name is None:
                    dropped.append(index)
                elif name != "probe_loading":
                    answer = notes.get(index, "")[len(_LOADING_NOTE):]
                    if name.startswith("bpftool:"):  # its answer means something else
                        answer = answer.replace(": supported)", ")").replace(
                            ": not supported)", ")")
                    notes[index] = _LOADING_NOTES.get(name.split("(")[0], "") + answer
            else:
                pid = self.follow_pid[index]
                name = current.get(pid, "probe_loading")
                if name is None:
                    dropped.append(index)
                elif name != "probe_loading":
                    notes[index] = notes.get(index, "").replace("probe_loading", name)
            if name is not None:
                probes[index] = name
        return dropped

    def _name(self, pid: int, size: int, kind: str) -> str | None:
        """The label; None where this trace cannot tell libbpf's from bpftool's."""
        others = self.sizes.get(pid, set())
        if kind == "SOCKET_FILTER" and size == _BPFTOOL_ATTR_SIZE and size not in others:
            return "bpftool:known_to_need_rlimit" if others else None
        if pid in self.public:
            return f"libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_{kind})"
        return "probe_loading"


# Probes that fill their own attr instead of calling bpf_prog_load().
_OWN_ATTR_PROBES = frozenset({"memcg_account", "prog_name"})
_BPFTOOL_ATTR_SIZE = 144  # sizeof(union bpf_attr) in bpftool 7.1's uapi headers
_LOADING_NOTE = "bpf_object__probe_loading(): can anything load at all"
_LOADING_NOTES = {
    "libbpf_probe_bpf_prog_type": "can programs of this type load",
    "bpftool:known_to_need_rlimit": "bpftool's RLIMIT_MEMLOCK check: loads under a zero "
                                    "limit (EPERM: the kernel still charges memlock)",
}


def label_calls(calls: Iterable[Call]) -> list[CallLabel]:
    """One label per call record (records of other types are skipped), in input order."""
    records = [c for c in calls if isinstance(c, dict) and c.get("type", "call") == "call"]
    tracker = FdTracker(records)
    ctx = Context(tracker)
    notes: dict[int, str] = {}
    loading = _LoadingProbes()
    for call in tracker.calls:
        matched = _match_label(ctx, call)
        if matched is not None:
            rule, ctx.probes[call["index"]] = matched
            notes[call["index"]] = _outcome(call, rule)
            loading.matched(call, rule)
    # Follow-ups, twice: a map used only by a probe program may come before the close
    # that follows it.
    for _ in range(2):
        for call in tracker.calls:
            if call["index"] in ctx.probes:
                continue
            probe = _follow_probe(ctx, call)
            if probe is not None:
                ctx.probes[call["index"]] = probe
                notes[call["index"]] = _follow_note(_closed_kind(ctx, call), probe)
                loading.followed(call["index"], _pid(call), probe)
    for index in loading.resolve(ctx.probes, notes):
        del ctx.probes[index]
    timeline = _Timeline.of(tracker.calls, ctx.probes)
    labels = []
    for call in tracker.calls:
        index = call["index"]
        probe = ctx.probes.get(index)
        if probe is not None:
            labels.append(CallLabel(index, "probe", probe, notes.get(index, "")))
        else:
            labels.append(CallLabel(index, _phase(call, ctx, timeline), None, _note(call)))
    return labels


def _note(call: Call) -> str:
    """A word on calls that are no probe but are easily taken for one."""
    syscall = call.get("syscall")
    if command(call) == "BPF_TOKEN_CREATE":
        return "BPF token from bpffs (libbpf >= 1.4 tries it; fails without delegation)"
    if command(call) == "BPF_PROG_LOAD" and call.get("size") == _BPFTOOL_ATTR_SIZE \
            and _returns_zero_as(call, "SOCKET_FILTER"):
        return ("r0 = 0; exit at sizeof(union bpf_attr): bpftool's known_to_need_rlimit() "
                "or bpf_object__probe_loading() of libbpf 0.8/1.2/1.3; nothing else in "
                "this trace tells which")
    if syscall == "memfd_create" and buffer(call, "name") == b"libbpf-placeholder-fd":
        return "an fd number reserved for a map, taken over by dup3 once it exists"
    return ""


def probe_table(labels: Iterable[CallLabel]) -> dict[int, str]:
    """index -> probe name for the probe calls among ``labels``."""
    return {label.index: label.probe for label in labels if label.probe is not None}


# ------------------------------------------------------------------ streaming form
#
# ``label_calls`` needs the whole list: a rule may ask who used a call's fd, and the
# follow-ups look both ways. The streaming form gives the same labels in two passes,
# holding only what is still undecided or still reachable through an open fd.
#
# Pass 1 (``scan_labels``) decides, for each call, the three layers of ``label_calls``:
#   l0, the rule table's probe; l1, the first follow-up sweep; l2, the second. In the
# sweeps a call's own references point back (to calls before it) and its users forward,
# so at a call's turn in sweep 1 its roots carry l0 or l1 and its users only l0; in
# sweep 2 its roots carry l0-l2 and its users l0-l1. Each layer of each call is decided
# as soon as what it depends on is (a user that is no probe settles "no" at once, so a
# map with a million updates holds nothing); a rule that asks for the users of an fd
# still open waits for its close, keeping that fd's users until then (only calls that
# look like probes by content ask). What pass 1 keeps in the end: the probe calls'
# labels and, per process, the index of the last load and the first attach.
# Pass 2 (``StreamLabels.label``) labels each call as a second pass goes by: its probe
# if pass 1 found one, else its phase from the timeline and the fds of the moment.

_UNKNOWN: Any = object()  # a layer not decided yet


class NeedsWholeTrace(Exception):  # noqa: N818 - a signal, never shown to anyone
    """This trace can only be labelled with all its calls in hand (indices that are not
    increasing, or a rule asking about calls the first pass did not keep)."""


class _Pending(Exception):  # noqa: N818
    """A rule asked for the users of an fd that is still open."""

    def __init__(self, node: _Node) -> None:
        self.node = node


class _Node:
    """One call in pass 1, while its label is undecided or an fd it made can still be
    read."""

    __slots__ = ("index", "pos", "pid", "l0", "l1", "l2", "note", "closed", "roots", "used",
                 "made", "complete", "u0", "u0_wait", "u01", "u01_wait", "told0", "told01",
                 "waiters", "record", "refs", "user_nodes", "rule_waiters", "awaiting",
                 "loading", "attach", "final", "__weakref__")

    def __init__(self, index: int, pos: int, pid: int) -> None:
        self.index, self.pos, self.pid = index, pos, pid
        self.l0 = self.l1 = self.l2 = _UNKNOWN
        self.note = ""  # the rule's note (l0)
        self.closed: str | None = None  # for a close(): what it closes (follow-up note)
        self.roots: tuple[_Node, ...] = ()  # the makers of the objects it reads
        self.used: tuple[_Node, ...] = ()  # the makers of the fds it reads (no close())
        self.made = False  # it made an fd ...
        self.complete = False  # ... and that fd is closed (or the trace ended)
        # Its users' l0 and l0-l1: the values known, and how many are not yet.
        self.u0: set[str | None] = set()
        self.u0_wait = 0
        self.u01: set[str | None] = set()
        self.u01_wait = 0
        self.told0 = self.told01 = False  # its own l0, l0-l1 passed on to ``used``
        self.waiters: set[_Node] | None = None  # calls whose roots wait on this one
        # Kept only while a rule may need them:
        self.record: Call | None = None
        self.refs: list[tuple[str, FdLife]] | None = None
        self.user_nodes: list[_Node] | None = None  # users, when a rule may ask for them
        self.rule_waiters: set[_Node] | None = None  # rules waiting for this fd's close
        self.awaiting: _Node | None = None  # the fd this call's rules wait for
        self.loading = self.attach = False
        self.final = False


def _l01(node: _Node) -> Any:
    return node.l1 if node.l0 is None else node.l0


def _l012(node: _Node) -> Any:
    value = _l01(node)
    return node.l2 if value is None else value


def _sole_probe_so_far(values: list[Any]) -> Any:
    """``_sole_probe`` of values some of which are not known yet: _UNKNOWN unless the
    known ones already say no."""
    known = [v for v in values if v is not _UNKNOWN]
    if len(known) == len(values):
        return _sole_probe(known)
    if None in known or len(set(known)) > 1:
        return None
    return _UNKNOWN


def _settled(life: FdLife, call: Call) -> bool:
    """Reading ``life`` tells nothing more: the object behind it is settled as no probe,
    and (unless ``call`` closes it) the fd's maker needs no more word of its users."""
    root = life.root.data
    if not root.final or _l012(root) is not None:
        return False
    if call.get("syscall") == "close":
        return True
    maker = life.data
    return maker.final and maker.user_nodes is None


class _StreamRules:
    """``Context`` for the rules in pass 1: the users of a kept call's fd, once closed,
    and the makers of the fds a kept call read."""

    def __init__(self, scan: _FirstPass) -> None:
        self.scan = scan

    def _node(self, call: Call) -> _Node:
        creating = self.scan.creating
        if creating is not None and call is creating.record:
            return creating
        node = self.scan.kept.get(call.get("index"))  # type: ignore[arg-type]
        if node is None or node.record is not call:
            raise NeedsWholeTrace("a rule asked about a call pass 1 did not keep")
        return node

    def users(self, call: Call) -> list[Call]:
        node = self._node(call)
        if not node.made:
            return []
        if node.user_nodes is None:
            if node is not self.scan.creating:
                raise NeedsWholeTrace("a rule asked for users pass 1 did not keep")
            node.user_nodes = []  # asked at its own call: keep its users from now on
        if not node.complete:
            raise _Pending(node)
        return [user.record for user in node.user_nodes]  # type: ignore[misc]

    def creator(self, call: Call, what: str) -> Call | None:
        for name, life in self._node(call).refs or ():
            if name == what:
                return life.root.call
        return None


class StreamLabels:
    """What pass 1 found: the probe calls and the timeline. ``label`` labels each call
    as pass 2 reaches it (``ctx`` over an ``FdCursor`` advanced to that call)."""

    def __init__(self, probes: dict[int, tuple[str, str]], timeline: _Timeline,
                 count: int) -> None:
        self.probes = probes  # index -> (probe, note)
        self.timeline = timeline
        self.count = count  # call records pass 1 read

    def label(self, call: Call, ctx: Context) -> CallLabel:
        index = call["index"]
        probe = self.probes.get(index)
        if probe is not None:
            return CallLabel(index, "probe", probe[0], probe[1])
        return CallLabel(index, _phase(call, ctx, self.timeline), None, _note(call))


class _FirstPass:
    def __init__(self) -> None:
        import weakref

        self.table = FdTable()
        self.count = 0
        self.last_index: int | None = None
        self.probes: dict[int, tuple[str, str]] = {}
        self.last_load: dict[int, tuple[int, int]] = {}  # pid -> (position, index)
        self.first_attach: dict[int, tuple[int, int]] = {}
        # Calls whose records rules may still read, by index (each kept alive by whoever
        # may ask: a call whose rules wait, the fd of the call that used it).
        self.kept: weakref.WeakValueDictionary[int, _Node] = weakref.WeakValueDictionary()
        self.waiting: set[_Node] = set()  # calls whose rules wait for a close
        self.undecided = 0
        self.work: list[_Node] = []
        self.creating: _Node | None = None
        self.rules = _StreamRules(self)
        self.loading = _LoadingProbes()

    def add(self, call: Call) -> None:
        index = call.get("index")
        if not isinstance(index, int) or (self.last_index is not None
                                          and index <= self.last_index):
            raise NeedsWholeTrace("call indices that do not increase")
        self.last_index = index
        step = self.table.step(call, index)
        if step.created is None and not _rules_for(call) and all(
                _settled(life, call) for _, life in step.refs):
            # No rule, no fd made, only fds of settled non-probes read: no probe, at once.
            self._no_probe(call, self.count, index)
            self.count += 1
            if step.ended is not None:
                self._complete(step.ended.data)
                self._run()
            return
        node = _Node(index, self.count, _pid(call))
        self.count += 1
        self.undecided += 1
        if step.created is not None:
            step.created.data = node
            node.made = True
        refs = step.refs
        node.roots = tuple(dict.fromkeys(life.root.data for _, life in refs))
        is_close = call.get("syscall") == "close"
        if not is_close:
            node.used = tuple(dict.fromkeys(life.data for _, life in refs))
        node.loading = command(call) in _LOADING_COMMANDS
        node.attach = _attach_call(call)
        node.record, node.refs = call, refs
        self.creating = node
        try:
            if _rules_for(call):
                self._rules(node)
            else:
                node.l0 = None
            if is_close:
                node.closed = _closed_kind(self.rules, call)
        finally:
            self.creating = None
        # Register with the makers of the fds it reads (the list form's users).
        kept = node.l0 is _UNKNOWN
        if not is_close:
            for _, life in refs:
                maker = life.data
                if maker.user_nodes is not None:
                    maker.user_nodes.append(node)
                    kept = True
        if kept:
            self.kept[index] = node
        else:
            node.record = node.refs = None
        v0, v01 = node.l0, _l01(node)
        node.told0, node.told01 = v0 is not _UNKNOWN, v01 is not _UNKNOWN
        for maker in node.used:
            if maker.final:
                continue
            if v0 is _UNKNOWN:
                maker.u0_wait += 1
            else:
                maker.u0.add(v0)
            if v01 is _UNKNOWN:
                maker.u01_wait += 1
            else:
                maker.u01.add(v01)
            self.work.append(maker)
        if node.told01:
            node.used = ()
        if step.ended is not None:
            self._complete(step.ended.data)
        self.work.append(node)
        self._run()

    def finish(self) -> StreamLabels:
        for life in self.table.open.values():
            self._complete(life.data)
        self._run()
        if self.undecided or self.waiting:
            raise NeedsWholeTrace(f"{self.undecided} calls left undecided")
        self._resolve_loading()
        timeline = _Timeline({pid: i for pid, (_, i) in self.last_load.items()},
                             {pid: i for pid, (_, i) in self.first_attach.items()})
        return StreamLabels(self.probes, timeline, self.count)

    # -- the layers

    def _resolve_loading(self) -> None:
        names = {index: probe for index, (probe, _) in self.probes.items()}
        notes = {index: note for index, (_, note) in self.probes.items()}
        for index in self.loading.resolve(names, notes):
            del names[index]
            if index in self.loading.loading:  # a load after all: on the timeline
                pid = self.loading.loading[index][0]
                self._timeline(pid, (self.loading.position[index], index), True, False)
        self.probes = {index: (names[index], notes[index]) for index in names}

    def _complete(self, maker: _Node) -> None:
        maker.complete = True
        self.work.append(maker)
        if maker.rule_waiters:
            self.work.extend(maker.rule_waiters)
            maker.rule_waiters = None

    def _rules(self, node: _Node) -> bool:
        """l0, unless a rule has to wait for an fd's close."""
        try:
            matched = _match_label(self.rules, node.record)  # type: ignore[arg-type]
            rule, label = matched if matched is not None else (None, None)
        except _Pending as pending:
            awaited = pending.node
            if node.awaiting is not awaited:
                if awaited.rule_waiters is None:
                    awaited.rule_waiters = set()
                awaited.rule_waiters.add(node)
                node.awaiting = awaited
            if node.made and node.user_nodes is None:
                node.user_nodes = []  # its own users may be asked for next time
            self.waiting.add(node)
            return False
        record: Call = node.record  # type: ignore[assignment]
        node.l0 = label
        if rule is not None:
            node.note = _outcome(record, rule)
            self.loading.matched(record, rule, node.pos)
        node.awaiting = None
        self.waiting.discard(node)
        return True

    def _follow(self, node: _Node, value: Callable[[_Node], Any], users: set[str | None],
                users_waiting: int) -> Any:
        """A follow-up layer (``_follow_probe``): by its roots' values, else its users'."""
        if node.roots:
            values = [value(root) for root in node.roots]
            probe = _sole_probe_so_far(values)
            if probe is _UNKNOWN:
                for root, v in zip(node.roots, values, strict=True):
                    if v is _UNKNOWN:
                        if root.waiters is None:
                            root.waiters = set()
                        root.waiters.add(node)
                return _UNKNOWN
            if probe is not None:
                return probe
        if not node.made or None in users or len(users) > 1:
            return None
        if users_waiting or not node.complete:
            return _UNKNOWN
        return _sole_probe(users)

    def _advance(self, node: _Node) -> None:
        if node.final:
            return
        before01, before012 = _l01(node), _l012(node)
        if node.l0 is _UNKNOWN:
            if node.awaiting is not None and not node.awaiting.complete:
                return
            if not self._rules(node):
                return
        if node.l0 is None:
            if node.l1 is _UNKNOWN:
                node.l1 = self._follow(node, _l01, node.u0, node.u0_wait)
            if node.l1 is None and node.l2 is _UNKNOWN:
                node.l2 = self._follow(node, _l012, node.u01, node.u01_wait)
        if not node.told0 and node.l0 is not _UNKNOWN:
            node.told0 = True
            for maker in node.used:
                if not maker.final:
                    maker.u0_wait -= 1
                    maker.u0.add(node.l0)
                    self.work.append(maker)
        v01 = _l01(node)
        if not node.told01 and v01 is not _UNKNOWN:
            node.told01 = True
            for maker in node.used:
                if not maker.final:
                    maker.u01_wait -= 1
                    maker.u01.add(v01)
                    self.work.append(maker)
            node.used = ()
        v012 = _l012(node)
        if node.waiters and (v01 is not before01 or v012 is not before012):
            self.work.extend(node.waiters)
            node.waiters = None
        if v012 is not _UNKNOWN:
            self._decided(node, v012)

    def _decided(self, node: _Node, probe: str | None) -> None:
        node.final = True
        self.undecided -= 1
        if probe is not None:
            note = node.note if node.l0 is not None else _follow_note(node.closed, probe)
            self.probes[node.index] = (probe, note)
            if node.l0 is None:
                self.loading.followed(node.index, node.pid, probe)
        else:
            self._timeline(node.pid, (node.pos, node.index), node.loading, node.attach)
        node.roots = ()
        node.u0 = node.u01 = set()

    def _no_probe(self, call: Call, pos: int, index: int) -> None:
        self._timeline(_pid(call), (pos, index), command(call) in _LOADING_COMMANDS,
                       _attach_call(call))

    def _timeline(self, pid: int, where: tuple[int, int], loading: bool,
                  attach: bool) -> None:
        """A call that is no probe, at (position, index): the last load and the first
        attach of its process so far."""
        if loading:
            self.last_load[pid] = max(self.last_load.get(pid, where), where)
        if attach:
            self.first_attach[pid] = min(self.first_attach.get(pid, where), where)

    def _run(self) -> None:
        work = self.work
        while work:
            self._advance(work.pop())


def scan_labels(calls: Iterable[Call]) -> StreamLabels:
    """Pass 1 of the streaming form over call records (as ``read_trace(...).calls()``
    gives them, well-formed). Raises ``NeedsWholeTrace`` when only ``label_calls`` can
    label them."""
    scan = _FirstPass()
    for call in calls:
        if isinstance(call, dict) and call.get("type", "call") == "call":
            scan.add(call)
    return scan.finish()


def label_calls_streaming(open_calls: Callable[[], Iterable[Call]]) -> Iterator[CallLabel]:
    """``label_calls`` in two passes: ``open_calls()`` is called twice and must give the
    same records each time (a trace file read twice). Falls back to ``label_calls`` when
    the trace needs it."""
    from itertools import islice

    try:
        labels = scan_labels(open_calls())
    except NeedsWholeTrace:
        yield from label_calls(open_calls())
        return
    cursor = FdCursor()
    ctx = Context(cursor)
    calls = (c for c in open_calls() if isinstance(c, dict) and c.get("type", "call") == "call")
    for call in islice(calls, labels.count):
        cursor.advance(call, call["index"])
        yield labels.label(call, ctx)
