"""libbpf 1.1.2's kernel feature probes, made with the same calls in the same order.

Each probe is a small test of the running kernel with a conclusive, cached answer,
asked lazily: libbpf runs a probe the first time something needs its answer (the name
probe runs inside the first map creation that wants a name, the prog_bind_map probe
after the first program load of an object with .rodata, the perf_link probe at the
first perf event attach). ``Features`` keeps that cache for the process, as libbpf's
static ``feature_probes[]`` table does.
"""

from __future__ import annotations

import errno as errno_codes
import resource
import struct
from collections.abc import Callable

from bpfreplay import sys as bsys
from bpfreplay.loader import bpfcalls
from bpfreplay.uapi import enum_values

_PROG = enum_values("bpf_prog_type")
_ATTACH = enum_values("bpf_attach_type")
_MAP = enum_values("bpf_map_type")
_FUNC = enum_values("bpf_func_id")
BPF_F_MMAPABLE = enum_values("bpf_map_flags").get("BPF_F_MMAPABLE", 1 << 10)

# Instructions (code, dst|src<<4, off, imm).
_INSN = struct.Struct("<BBhi")


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return _INSN.pack(code, dst | (src << 4), off, imm)


MOV64_IMM = 0xB7
MOV64_REG = 0xBF
ADD64_IMM = 0x07
CALL = 0x85
EXIT = 0x95
LD_IMM64 = 0x18
ST_MEM_DW = 0x7A
PSEUDO_MAP_VALUE = 2

RETURN_ZERO = insn(MOV64_IMM, 0, imm=0) + insn(EXIT)


def call(helper: str) -> bytes:
    return insn(CALL, imm=_FUNC["BPF_FUNC_" + helper])


# BTF building blocks, as the uapi's BTF_*_ENC macros lay them out.
def _btf_type(name_off: int, kind: int, vlen: int, size_or_type: int, kflag: int = 0) -> bytes:
    return struct.pack("<III", name_off, (kflag << 31) | (kind << 24) | vlen, size_or_type)


def _btf_int(name_off: int, encoding: int, bits_offset: int, bits: int, size: int) -> bytes:
    return _btf_type(name_off, 1, 0, size) + struct.pack(
        "<I", (encoding << 24) | (bits_offset << 16) | bits)


INT_SIGNED = 1
KIND_PTR, KIND_FUNC, KIND_FUNC_PROTO, KIND_VAR, KIND_DATASEC = 2, 12, 13, 14, 15
KIND_FLOAT, KIND_DECL_TAG, KIND_TYPE_TAG, KIND_ENUM64 = 16, 17, 18, 19
VAR_STATIC, FUNC_GLOBAL = 0, 1

_INT = _btf_int(1, INT_SIGNED, 0, 32, 4)
_ANON_INT = _btf_int(0, INT_SIGNED, 0, 32, 4)
# void x(int a) {}: strings "\0int\0x\0a" (libbpf's sizeof includes the final NUL).
_FUNC_STRINGS = b"\0int\0x\0a\0"
_FUNC_PROTO = _btf_type(0, KIND_FUNC_PROTO, 1, 0) + struct.pack("<II", 7, 1)


def _btf_probe(types: bytes, strings: bytes) -> Callable[[Features], bool]:
    def probe(features: Features) -> bool:
        return features.probe_fd(
            lambda: bpfcalls.btf_load(bpfcalls.raw_btf(types, strings), features=features))
    return probe


BTF_PROBES: dict[str, tuple[bytes, bytes]] = {
    "btf": (_INT, b"\0int\0"),
    "btf_func": (_INT + _FUNC_PROTO + _btf_type(5, KIND_FUNC, 0, 2), _FUNC_STRINGS),
    "btf_global_func": (_INT + _FUNC_PROTO + _btf_type(5, KIND_FUNC, FUNC_GLOBAL, 2),
                        _FUNC_STRINGS),
    "btf_datasec": (_ANON_INT + _btf_type(1, KIND_VAR, 0, 1) + struct.pack("<I", VAR_STATIC)
                    + _btf_type(3, KIND_DATASEC, 1, 4) + struct.pack("<III", 2, 0, 4),
                    b"\0x\0.data\0"),
    "btf_float": (_btf_type(1, KIND_FLOAT, 0, 4), b"\0float\0"),
    "btf_decl_tag": (_ANON_INT + _btf_type(1, KIND_VAR, 0, 1) + struct.pack("<I", VAR_STATIC)
                     + _btf_type(1, KIND_DECL_TAG, 0, 2) + struct.pack("<i", -1),
                     b"\0tag\0"),
    "btf_type_tag": (_ANON_INT + _btf_type(1, KIND_TYPE_TAG, 0, 1)
                     + _btf_type(0, KIND_PTR, 0, 2), b"\0tag\0"),
    "btf_enum64": (_btf_type(1, KIND_ENUM64, 0, 8), b"\0enum64\0"),
}


class Features:
    """The answers of libbpf's feature probes for this process, asked lazily."""

    def __init__(self) -> None:
        self.results: dict[str, bool] = {}
        self.memlock_bumped = False

    def supports(self, feature: str) -> bool:
        """kernel_supports(): run the probe the first time, then answer from the cache."""
        known = self.results.get(feature)
        if known is None:
            try:
                known = bool(PROBES[feature](self))
            except OSError:
                known = False  # libbpf: "Detection of kernel ... support failed"
            self.results[feature] = known
        return known

    def bump_memlock(self) -> None:
        """bump_rlimit_memlock(): kernels before memcg accounting (5.11) charge BPF memory
        to RLIMIT_MEMLOCK, which libbpf raises to infinity."""
        if self.memlock_bumped or self.supports("memcg_account"):
            return
        self.memlock_bumped = True
        try:
            resource.setrlimit(resource.RLIMIT_MEMLOCK,
                               (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        except (OSError, ValueError):
            pass

    @staticmethod
    def probe_fd(make: Callable[[], int]) -> bool:
        """probe_fd(): whether the call made an fd (closed at once)."""
        try:
            fd = make()
        except OSError:
            return False
        bsys.close(fd)
        return True


# ------------------------------------------------------------------- probes


def _memcg_account(features: Features) -> bool:
    # Raw PROG_LOAD (no retry, no memlock bump) of a program calling
    # bpf_ktime_get_coarse_ns(), a helper of the release that moved to memcg (5.11).
    keep = bsys.Buffers()
    attr = bpfcalls.Attr(bpfcalls.BPF_PROG_LOAD, bpfcalls.MEMCG_PROBE_SIZE)
    attr.set("prog_type", _PROG["BPF_PROG_TYPE_SOCKET_FILTER"])
    insns = call("ktime_get_coarse_ns") + insn(EXIT)
    attr.set("insns", keep.bytes_at(insns)).set("insn_cnt", 2)
    attr.set("license", keep.cstring_at("GPL"))
    return Features.probe_fd(attr.call)


def _prog_name(features: Features) -> bool:
    keep = bsys.Buffers()
    attr = bpfcalls.Attr(bpfcalls.BPF_PROG_LOAD, bpfcalls.PROG_NAME_PROBE_SIZE)
    attr.set("prog_type", _PROG["BPF_PROG_TYPE_SOCKET_FILTER"])
    attr.set("license", keep.cstring_at("GPL"))
    attr.set("insns", keep.bytes_at(RETURN_ZERO)).set("insn_cnt", 2)
    attr.set("prog_name", b"libbpf_nametest")
    return Features.probe_fd(lambda: bpfcalls.raw_prog_load(attr))


def _simple_prog(features: Features, prog_type: str, insns: bytes = RETURN_ZERO,
                 **options: int) -> int:
    load = bpfcalls.ProgLoad(_PROG[prog_type], insns, **options)
    return bpfcalls.prog_load(load, features=features)


def _global_data(features: Features) -> bool:
    map_fd = bpfcalls.map_create(_MAP["BPF_MAP_TYPE_ARRAY"], "libbpf_global", 4, 32, 1,
                                 features=features)
    insns = (insn(LD_IMM64, 1, PSEUDO_MAP_VALUE, imm=map_fd) + insn(0, imm=16)
             + insn(ST_MEM_DW, 1, 0, 0, 42) + RETURN_ZERO)
    try:
        prog = _simple_prog(features, "BPF_PROG_TYPE_SOCKET_FILTER", insns)
    except OSError:
        bsys.close(map_fd)
        return False
    bsys.close(map_fd)
    bsys.close(prog)
    return True


def _array_mmap(features: Features) -> bool:
    return Features.probe_fd(lambda: bpfcalls.map_create(
        _MAP["BPF_MAP_TYPE_ARRAY"], "libbpf_mmap", 4, 4, 1, map_flags=BPF_F_MMAPABLE,
        features=features))


def _exp_attach_type(features: Features) -> bool:
    return Features.probe_fd(lambda: _simple_prog(
        features, "BPF_PROG_TYPE_CGROUP_SOCK",
        expected_attach_type=_ATTACH["BPF_CGROUP_INET_SOCK_CREATE"]))


def _probe_read_kern(features: Features) -> bool:
    insns = (insn(MOV64_REG, 1, 10) + insn(ADD64_IMM, 1, imm=-8) + insn(MOV64_IMM, 2, imm=8)
             + insn(MOV64_IMM, 3, imm=0) + call("probe_read_kernel") + insn(EXIT))
    return Features.probe_fd(lambda: _simple_prog(features, "BPF_PROG_TYPE_TRACEPOINT", insns))


def _prog_bind_map(features: Features) -> bool:
    map_fd = bpfcalls.map_create(_MAP["BPF_MAP_TYPE_ARRAY"], "libbpf_det_bind", 4, 32, 1,
                                 features=features)
    try:
        prog = _simple_prog(features, "BPF_PROG_TYPE_SOCKET_FILTER")
    except OSError:
        bsys.close(map_fd)
        return False
    try:
        bpfcalls.prog_bind_map(prog, map_fd)
        bound = True
    except OSError:
        bound = False
    bsys.close(map_fd)
    bsys.close(prog)
    return bound


def _perf_link(features: Features) -> bool:
    prog = _simple_prog(features, "BPF_PROG_TYPE_TRACEPOINT")
    # An invalid perf event fd: EBADF if perf links exist, EINVAL if not.
    try:
        link = bpfcalls.link_create(prog, -1, _ATTACH["BPF_PERF_EVENT"])
    except OSError as e:
        bsys.close(prog)
        return e.errno == errno_codes.EBADF
    bsys.close(link)
    bsys.close(prog)
    return False


def _bpf_cookie(features: Features) -> bool:
    insns = call("get_attach_cookie") + insn(EXIT)
    return Features.probe_fd(lambda: _simple_prog(features, "BPF_PROG_TYPE_KPROBE", insns))


def _module_btf(features: Features) -> bool:
    # Kernels with module BTF also fill in the name of a BTF object's info.
    types, strings = BTF_PROBES["btf"]
    try:
        fd = bpfcalls.btf_load(bpfcalls.raw_btf(types, strings), features=features)
    except OSError:
        return False  # no BTF at all
    try:
        bpfcalls.btf_info(fd, 16)
        return True
    except OSError:
        return False
    finally:
        bsys.close(fd)


def _syscall_wrapper(features: Features) -> bool:
    # libbpf asks the kprobe PMU (or tracefs kprobe_events) whether __x64_sys_bpf exists;
    # this machine has no kprobes, which libbpf also reads as "no wrapper".
    raise OSError(errno_codes.EOPNOTSUPP, "the syscall_wrapper probe needs kprobes")


PROBES: dict[str, Callable[[Features], bool]] = {
    "memcg_account": _memcg_account,
    "prog_name": _prog_name,
    "global_data": _global_data,
    "array_mmap": _array_mmap,
    "exp_attach_type": _exp_attach_type,
    "probe_read_kern": _probe_read_kern,
    "prog_bind_map": _prog_bind_map,
    "perf_link": _perf_link,
    "bpf_cookie": _bpf_cookie,
    "module_btf": _module_btf,
    "syscall_wrapper": _syscall_wrapper,
    **{name: _btf_probe(types, strings) for name, (types, strings) in BTF_PROBES.items()},
}


def probe_loading(features: Features) -> None:
    """bpf_object__probe_loading(): can a trivial program load at all (socket filter,
    else tracepoint)? OSError with the kernel's errno if not."""
    features.bump_memlock()
    try:
        fd = _simple_prog(features, "BPF_PROG_TYPE_SOCKET_FILTER")
    except OSError:
        fd = _simple_prog(features, "BPF_PROG_TYPE_TRACEPOINT")
    bsys.close(fd)
