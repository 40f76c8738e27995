"""libbpf's public probe API and bpftool's own probes, recognised by their whole call.

``libbpf_probe_bpf_prog_type()``, ``libbpf_probe_bpf_map_type()`` and
``libbpf_probe_bpf_helper()`` (src/libbpf_probes.c: probe_prog_load, probe_map_create,
libbpf_probe_bpf_helper; libbpf 0.x's bpf_probe_prog_type / bpf_probe_map_type /
bpf_probe_helper make the same calls) are what tools such as ``bpftool feature probe``
use: each call is named with its arguments. bpftool's own probes (feature.c of bpftool
7.1: probe_bpf_syscall, probe_misc_feature's large_insn_limit, bounded_loops,
v2/v3_isa_extension) go through bpf_prog_load too and are named as bpftool's.

Pure: call records in, names out.
"""

from __future__ import annotations

from functools import cache

from bpfreplay.decode.fds import Call, attr_field, buffer, command
from bpfreplay.decode.probe_calls import (
    ANY,
    CALL,
    EXIT,
    FD,
    JLT_IMM,
    JMP32_JLT_IMM,
    JNE_IMM,
    MOV64_IMM,
    POINTER,
    SUB64_IMM,
    AttrShape,
    FieldValue,
    Insn,
    attach_type,
    insn,
    insns_are,
    license_is_gpl,
    prog_load_shape,
    returns_zero,
    sizes,
    value,
)
from bpfreplay.uapi import enum_values
from bpfreplay.uapi.defines import BPF_F_SLEEPABLE

_LOG_4K: dict[str, FieldValue] = {"log_level": 1, "log_size": 4096, "log_buf": POINTER}


def _name_of(enum: str, number: int, prefix: str) -> str | None:
    """The enumerator's name without ``prefix``; of aliases, the one that is not
    ``*_DEPRECATED`` (BPF_MAP_TYPE_CGROUP_STORAGE, as libbpf and bpftool name it)."""
    return _names_by_value(enum, prefix).get(number)


@cache
def _names_by_value(enum: str, prefix: str) -> dict[int, str]:
    # Asked for every PROG_LOAD and MAP_CREATE: the enum inverted once, not scanned per
    # call. The first name in enum order wins, a *_DEPRECATED one only when alone.
    names: dict[int, str] = {}
    for name, v in sorted(enum_values(enum).items(),
                          key=lambda item: item[0].endswith("_DEPRECATED")):
        names.setdefault(v, name.removeprefix(prefix))
    return names


@cache
def _prog_type_extras() -> dict[str, dict[str, FieldValue]]:
    """What probe_prog_load() sets besides the type, per program type."""
    return {
        "CGROUP_SOCK_ADDR": {"expected_attach_type": attach_type("CGROUP_INET4_CONNECT")},
        "CGROUP_SOCKOPT": {"expected_attach_type": attach_type("CGROUP_GETSOCKOPT")},
        "SK_LOOKUP": {"expected_attach_type": attach_type("SK_LOOKUP")},
        "KPROBE": {"kern_version": ANY},  # get_kernel_version() of the recording machine
        "LIRC_MODE2": {"expected_attach_type": attach_type("LIRC_MODE2")},
        "TRACING": {**_LOG_4K, "expected_attach_type": attach_type("TRACE_FENTRY"),
                    "attach_btf_id": 1},
        "LSM": {**_LOG_4K, "expected_attach_type": attach_type("MODIFY_RETURN"),
                "attach_btf_id": 1},
        "EXT": {**_LOG_4K, "attach_btf_id": 1},
        "SYSCALL": {"prog_flags": BPF_F_SLEEPABLE},
        "NETFILTER": {"expected_attach_type": attach_type("NETFILTER")},  # libbpf >= 1.2
    }


@cache
def _prog_probe_shape(type_name: str, helper: bool) -> AttrShape:
    fields = dict(_prog_type_extras().get(type_name, {}))
    if helper:
        fields.update(_LOG_4K)  # libbpf_probe_bpf_helper reads the verifier's log
    return prog_load_shape(sizes("prog_load"), type_name, 2, **fields)


def _prog_type_name(call: Call) -> str | None:
    return _name_of("bpf_prog_type", attr_field(call, "prog_type"), "BPF_PROG_TYPE_")


def prog_type_probe(call: Call) -> str | None:
    """``libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_X)`` if the call is that probe."""
    type_name = _prog_type_name(call)
    if type_name is None or command(call) != "BPF_PROG_LOAD":
        return None
    if _prog_probe_shape(type_name, False).matches(call) and insns_are(
            call, returns_zero()) and license_is_gpl(call):
        return f"libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_{type_name})"
    return None


def helper_probe(call: Call) -> str | None:
    """``libbpf_probe_bpf_helper(BPF_PROG_TYPE_X, bpf_y)`` if the call is that probe."""
    type_name = _prog_type_name(call)
    if type_name is None or command(call) != "BPF_PROG_LOAD":
        return None
    raw = buffer(call, "insns")
    if len(raw) != 16 or raw[0] != CALL:
        return None
    helper_id = int.from_bytes(raw[4:8], "little", signed=True)
    if not (_prog_probe_shape(type_name, True).matches(call)
            and insns_are(call, (insn(CALL, imm=helper_id), insn(EXIT)))
            and license_is_gpl(call)):
        return None
    helper = _name_of("bpf_func_id", helper_id, "BPF_FUNC_")
    helper = f"bpf_{helper}" if helper else f"helper#{helper_id}"
    return f"libbpf_probe_bpf_helper(BPF_PROG_TYPE_{type_name}, {helper})"


_NO_PREALLOC = 1  # BPF_F_NO_PREALLOC
_MMAPABLE = 1 << 10  # BPF_F_MMAPABLE


@cache
def _map_type_extras() -> dict[str, dict[str, FieldValue]]:
    """What probe_map_create() sets per map type (key 4, value 4, 1 entry otherwise)."""
    storage: dict[str, FieldValue] = {
        "value_size": 8, "max_entries": 0, "map_flags": _NO_PREALLOC, "btf_fd": FD,
        "btf_key_type_id": 1, "btf_value_type_id": 3}
    cgroup_storage: dict[str, FieldValue] = {
        "key_size": 16, "value_size": 8, "max_entries": 0}  # bpf_cgroup_storage_key
    ring: dict[str, FieldValue] = {"key_size": 0, "value_size": 0, "max_entries": ANY}
    in_map: dict[str, FieldValue] = {"inner_map_fd": FD}
    return {
        "STACK_TRACE": {"value_size": 8},
        "LPM_TRIE": {"key_size": 8, "value_size": 8, "map_flags": _NO_PREALLOC},
        "CGROUP_STORAGE": cgroup_storage, "PERCPU_CGROUP_STORAGE": cgroup_storage,
        "QUEUE": {"key_size": 0}, "STACK": {"key_size": 0},
        "SK_STORAGE": storage, "INODE_STORAGE": storage, "TASK_STORAGE": storage,
        "CGRP_STORAGE": storage,
        "RINGBUF": ring, "USER_RINGBUF": ring,  # max_entries: the page size
        # -ENOTSUPP expected; libbpf >= 1.4 also passes value_type_btf_obj_fd -1
        "STRUCT_OPS": {"btf_vmlinux_value_type_id": 1, "value_type_btf_obj_fd": ANY,
                       "map_flags": ANY},
        "BLOOM_FILTER": {"key_size": 0},
        "ARENA": {"key_size": 0, "value_size": 0, "map_flags": _MMAPABLE},  # 1.4+
        "INSN_ARRAY": {"value_size": ANY},  # 1.7: sizeof(struct bpf_insn_array_value)
        "ARRAY_OF_MAPS": in_map, "HASH_OF_MAPS": in_map,
    }


@cache
def _map_probe_shape(type_name: str) -> AttrShape:
    fields: dict[str, FieldValue] = {
        "map_type": value("bpf_map_type", "BPF_MAP_TYPE_" + type_name), "key_size": 4,
        "value_size": 4, "max_entries": 1, **_map_type_extras().get(type_name, {})}
    return AttrShape("BPF_MAP_CREATE", sizes("map_create"), fields)


def map_type_probe(call: Call) -> str | None:
    """``libbpf_probe_bpf_map_type(BPF_MAP_TYPE_X)`` if the call is that probe's map."""
    if command(call) != "BPF_MAP_CREATE":
        return None
    type_name = _name_of("bpf_map_type", attr_field(call, "map_type"), "BPF_MAP_TYPE_")
    if type_name is None or type_name == "UNSPEC":
        return None
    if _map_probe_shape(type_name).matches(call):
        return f"libbpf_probe_bpf_map_type(BPF_MAP_TYPE_{type_name})"
    return None


def inner_map_of_probe(call: Call) -> bool:
    """probe_map_create()'s inner map for map-in-map types: unnamed HASH 4/4/1."""
    return _map_probe_shape("HASH").matches(call)


# ------------------------------------------------------------------ bpftool

_MAXINSNS = 4096  # BPF_MAXINSNS


@cache
def _bpftool_programs() -> dict[str, tuple[Insn, ...]]:
    """bpftool 7.1 feature.c, probe_misc_feature()'s programs (SOCKET_FILTER)."""
    return {
        "probe_large_insn_limit": (*[insn(MOV64_IMM, imm=1)] * _MAXINSNS, insn(EXIT)),
        "probe_bounded_loops": (insn(MOV64_IMM, imm=10), insn(SUB64_IMM, imm=1),
                                insn(JNE_IMM, off=-2), insn(EXIT)),
        "probe_v2_isa_extension": (insn(MOV64_IMM), insn(JLT_IMM, off=1),
                                   insn(MOV64_IMM, imm=1), insn(EXIT)),
        "probe_v3_isa_extension": (insn(MOV64_IMM), insn(JMP32_JLT_IMM, off=1),
                                   insn(MOV64_IMM, imm=1), insn(EXIT)),
    }


@cache
def _socket_filter_shape(count: int) -> AttrShape:
    return prog_load_shape(sizes("prog_load"), "SOCKET_FILTER", count)


@cache
def _empty_load_shape() -> AttrShape:
    return AttrShape("BPF_PROG_LOAD", sizes("prog_load"), {})


def bpftool_probe(call: Call) -> str | None:
    """The name of bpftool's own probe this call is (``bpftool:probe_bounded_loops``)."""
    if command(call) != "BPF_PROG_LOAD":
        return None
    if _empty_load_shape().matches(call) and not buffer(call, "insns"):
        # probe_bpf_syscall: bpf_prog_load(BPF_PROG_TYPE_UNSPEC, NULL, NULL, NULL, 0, NULL)
        return "bpftool:probe_bpf_syscall"
    count = len(buffer(call, "insns")) // 8
    if not license_is_gpl(call) or not _socket_filter_shape(count).matches(call):
        return None
    for name, program in _bpftool_programs().items():
        if len(program) == count and insns_are(call, program):
            return f"bpftool:{name}"
    return None


@cache
def _large_insn_shape() -> AttrShape:
    return prog_load_shape(sizes("prog_load"), "SCHED_CLS", _MAXINSNS + 1)


def libbpf_0x_probe(call: Call) -> str | None:
    """libbpf 0.x's bpf_probe_large_insn_limit(0): SCHED_CLS, 4096 x r0 = 1, exit."""
    if (command(call) == "BPF_PROG_LOAD" and _large_insn_shape().matches(call)
            and license_is_gpl(call)
            and insns_are(call, _bpftool_programs()["probe_large_insn_limit"])):
        return "bpf_probe_large_insn_limit"
    return None
