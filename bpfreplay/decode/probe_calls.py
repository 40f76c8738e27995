"""What libbpf's probe calls are, byte for byte: attr sizes per libbpf release, the
fields each probe sets, its instructions and its BTF.

A call is taken for a libbpf probe only when all of it matches: the command, the attr
size the wrapper passes, every attr field (those the probe sets equal to what it sets,
every other byte up to the size zero), the instructions and the BTF. The facts come
from libbpf's source, tag by tag (src/bpf.c: bpf_prog_load, bpf_map_create,
bpf_btf_load, probe_memcg_account; src/libbpf.c, from 1.4 src/features.c:
probe_kern_*; src/libbpf_probes.c: libbpf__load_raw_btf), written down here as data.

Pure: call records in, yes or no out.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache

from bpfreplay.decode.fds import Call, buffer, command
from bpfreplay.uapi import attr_layout, cmd_value, enum_values

# Wildcards for ``AttrShape`` fields.
POINTER = "pointer"  # a non-null user pointer (what it points at is checked apart)
FD = "fd"  # a file descriptor (> 0)
ANY = "any"  # any value (set from the running system: kern_version, page size)

FieldValue = int | bytes | str | frozenset[int]


def _end(command_name: str, field: str) -> int:
    """offsetofend(union bpf_attr, field), from the kernel's layout (fields are only ever
    appended, so offsets agree across releases)."""
    layout = attr_layout(cmd_value(command_name))
    f = layout.field(field) if layout else None
    if f is None:
        raise KeyError(field)
    return f.end


@dataclass(frozen=True, slots=True)
class LibbpfRelease:
    """The attr sizes one family of libbpf releases passes."""

    versions: str
    prog_load: int  # bpf_prog_load()
    map_create: int  # bpf_map_create()
    btf_load: int  # bpf_btf_load() (libbpf__load_raw_btf)
    link_create: int  # bpf_link_create(): offsetofend(union bpf_attr, link_create)
    memcg_probe: int  # probe_memcg_account()'s own attr
    name_probe: int | None  # probe_kern_prog_name()'s own attr; None: via bpf_prog_load
    named_probe_maps: bool  # probe maps named "libbpf_global" ... (1.0+)
    cookie_prog_type: str  # probe_kern_bpf_cookie()'s program type


@cache
def releases() -> tuple[LibbpfRelease, ...]:
    p, m, b = "BPF_PROG_LOAD", "BPF_MAP_CREATE", "BPF_BTF_LOAD"
    memcg_old = _end(p, "attach_btf_obj_fd")
    token = _end(p, "prog_token_fd")
    return (
        # 0.8: bpf_prog_load and bpf_link_create pass sizeof(union bpf_attr) of its own
        # header (144, measured by compiling against v0.8.0's include/uapi/linux/bpf.h);
        # the name probe goes through bpf_prog_load as "test"; probe maps are unnamed.
        LibbpfRelease("0.8", 144, _end(m, "map_extra"), _end(b, "btf_log_level"), 144,
                      memcg_old, None, False, "KPROBE"),
        LibbpfRelease("1.0-1.1", _end(p, "fd_array"), _end(m, "map_extra"),
                      _end(b, "btf_log_level"), 48, memcg_old, _end(p, "prog_name"), True,
                      "KPROBE"),
        LibbpfRelease("1.2", _end(p, "log_true_size"), _end(m, "map_extra"),
                      _end(b, "btf_log_true_size"), 48, memcg_old, _end(p, "prog_name"),
                      True, "KPROBE"),
        LibbpfRelease("1.3", _end(p, "log_true_size"), _end(m, "map_extra"),
                      _end(b, "btf_log_true_size"), 64, memcg_old, _end(p, "prog_name"),
                      True, "KPROBE"),
        LibbpfRelease("1.4", token, _end(m, "map_token_fd"), _end(b, "btf_token_fd"), 64,
                      memcg_old, _end(p, "prog_name"), True, "TRACEPOINT"),
        LibbpfRelease("1.5", token, _end(m, "map_token_fd"), _end(b, "btf_token_fd"), 64,
                      token, token, True, "TRACEPOINT"),
        LibbpfRelease("1.6", _end(p, "fd_array_cnt"), _end(m, "map_token_fd"),
                      _end(b, "btf_token_fd"), 64, token, token, True, "TRACEPOINT"),
        LibbpfRelease("1.7", _end(p, "keyring_id"), _end(m, "excl_prog_hash_size"),
                      _end(b, "btf_token_fd"), 64, token, token, True, "TRACEPOINT"),
    )


@cache
def sizes(wrapper: str) -> frozenset[int]:
    """The attr sizes ``wrapper`` (a LibbpfRelease field) passes in any known release."""
    return frozenset(getattr(r, wrapper) for r in releases()
                     if getattr(r, wrapper) is not None)


# ------------------------------------------------------------------ attrs


class AttrShape:
    """One exact attr: the command, the sizes it may come with, the fields the caller
    sets (a value, a set of values, bytes for a char[], or POINTER / FD / ANY) and zero
    everywhere else up to the size."""

    __slots__ = ("cmd", "sizes", "template", "checks")

    def __init__(self, cmd: str, sizes: Iterable[int], fields: Mapping[str, FieldValue]):
        self.cmd = cmd
        self.sizes = frozenset(sizes)
        layout = attr_layout(cmd_value(cmd))
        assert layout is not None, cmd
        width = max(self.sizes)
        template = bytearray(width)
        checks: list[tuple[int, int, FieldValue]] = []
        for name, want in fields.items():
            f = layout.field(name)
            if f is None:
                raise KeyError(f"{cmd} has no field {name}")
            if isinstance(want, int):
                template[f.offset:f.end] = (want & ((1 << (8 * f.size)) - 1)).to_bytes(
                    f.size, "little")
            elif isinstance(want, bytes):
                template[f.offset:f.end] = want.ljust(f.size, b"\0")[:f.size]
            else:
                checks.append((f.offset, f.end, want))
        self.template = bytes(template)
        self.checks = tuple(checks)

    def matches(self, call: Call) -> bool:
        if command(call) != self.cmd:
            return False
        size, attr = call.get("size"), call.get("attr")
        if size not in self.sizes or not isinstance(attr, bytes | bytearray) \
                or len(attr) < size:
            return False
        have = bytearray(attr[:size])
        for start, end, want in self.checks:
            if start >= size:
                continue
            value = int.from_bytes(have[start:end], "little")
            if want == POINTER and not value:
                return False
            if want == FD and not 0 < value < 1 << 31:
                return False
            if isinstance(want, frozenset) and value not in want:
                return False
            have[start:end] = self.template[start:end]
        return bytes(have) == self.template[:size]


# ------------------------------------------------------------------ instructions

_INSN = struct.Struct("<BBhi")
MOV64_IMM, EXIT, CALL, LD_IMM64, ST_MEM_DW, MOV64_REG, ADD64_IMM = (
    0xB7, 0x95, 0x85, 0x18, 0x7A, 0xBF, 0x07)
SUB64_IMM, JNE_IMM, JLT_IMM, JMP32_JLT_IMM = 0x17, 0x55, 0xA5, 0xA6
PSEUDO_MAP_VALUE = 2
Insn = tuple[int, int, int, int, int | None]  # code, dst, src, off, imm (None: a map fd)


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0,
         imm: int | None = 0) -> Insn:
    return (code, dst, src, off, imm)


def helper_id(name: str) -> int:
    return enum_values("bpf_func_id").get("BPF_FUNC_" + name, -1)


def insns_are(call: Call, want: tuple[Insn, ...]) -> bool:
    """The program is exactly ``want`` (an imm of None: any fd)."""
    raw = buffer(call, "insns")
    if len(raw) != 8 * len(want):
        return False
    image, fds = _program_image(want)
    if not fds:
        return raw == image  # every field of every instruction fixed: the bytes are it
    for i in fds:  # an fd's imm: any 0 < fd < 1 << 31; the rest of the bytes as given
        if not 0 < int.from_bytes(raw[8 * i + 4:8 * i + 8], "little", signed=True) < 1 << 31:
            return False
        raw = raw[:8 * i + 4] + image[8 * i + 4:8 * i + 8] + raw[8 * i + 8:]
    return raw == image


@cache
def _program_image(want: tuple[Insn, ...]) -> tuple[bytes, tuple[int, ...]]:
    """``want`` as the bytes it loads as (an fd's imm as 0) and which instructions hold
    an fd: rules ask on every PROG_LOAD, so compared as bytes, not decoded per call."""
    image = b"".join(_INSN.pack(code, (src << 4) | dst, off, imm or 0)
                     for code, dst, src, off, imm in want)
    return image, tuple(i for i, expected in enumerate(want) if expected[4] is None)


def returns_zero() -> tuple[Insn, ...]:
    return (insn(MOV64_IMM), insn(EXIT))


def calls_helper(name: str) -> tuple[Insn, ...]:
    return (insn(CALL, imm=helper_id(name)), insn(EXIT))


def map_value_store() -> tuple[Insn, ...]:
    """probe_kern_global_data: r1 = map_value(fd) + 16; *(u64 *)(r1 + 0) = 42; r0 = 0."""
    return (insn(LD_IMM64, 1, PSEUDO_MAP_VALUE, imm=None), insn(0, imm=16),
            insn(ST_MEM_DW, 1, imm=42), insn(MOV64_IMM), insn(EXIT))


def read_kernel_onto_stack() -> tuple[Insn, ...]:
    """probe_kern_probe_read_kernel: r1 = r10; r1 += -8; r2 = 8; r3 = 0; call; exit."""
    return (insn(MOV64_REG, 1, 10), insn(ADD64_IMM, 1, imm=-8), insn(MOV64_IMM, 2, imm=8),
            insn(MOV64_IMM, 3), insn(CALL, imm=helper_id("probe_read_kernel")), insn(EXIT))


# ------------------------------------------------------------------ BTF

_BTF_MAGIC_VERSION = struct.pack("<HBB", 0xEB9F, 1, 0)
INT_SIGNED = 1


def raw_btf(types: tuple[int, ...], strings: bytes) -> bytes:
    """libbpf__load_raw_btf: a 24-byte header, the types, then the strings (with their
    trailing NUL, as ``sizeof(strs)`` counts it)."""
    type_bytes = struct.pack(f"<{len(types)}I", *types)
    header = _BTF_MAGIC_VERSION + struct.pack("<5I", 24, 0, len(type_bytes),
                                              len(type_bytes), len(strings))
    return header + type_bytes + strings


def btf_type(name_off: int, kind: int, vlen: int = 0, kind_flag: int = 0,
             size_or_type: int = 0) -> tuple[int, int, int]:
    return (name_off, (kind_flag << 31) | (kind << 24) | vlen, size_or_type)


K_INT, K_PTR, K_STRUCT, K_FUNC, K_FUNC_PROTO, K_VAR, K_DATASEC, K_FLOAT = (
    1, 2, 4, 12, 13, 14, 15, 16)
K_DECL_TAG, K_TYPE_TAG, K_ENUM64 = 17, 18, 19


def int_type(name_off: int) -> tuple[int, ...]:
    """A signed 32-bit int of 4 bytes."""
    return (*btf_type(name_off, K_INT, size_or_type=4), (INT_SIGNED << 24) | 32)


@cache
def probe_btfs() -> dict[str, bytes]:
    """The BTF blobs of libbpf's probe_kern_btf_* (and probe_module_btf: the same as
    "btf"), by feature name."""
    datasec = (*int_type(0), *btf_type(1, K_VAR, size_or_type=1), 0,
               *btf_type(3, K_DATASEC, vlen=1, size_or_type=4), 2, 0, 4)
    func_types = (*int_type(1), *btf_type(0, K_FUNC_PROTO, vlen=1), 7, 1)
    return {
        "btf": raw_btf(int_type(1), b"\0int\0"),
        "btf_func": raw_btf((*func_types, *btf_type(5, K_FUNC, size_or_type=2)),
                            b"\0int\0x\0a\0"),
        "btf_global_func": raw_btf((*func_types, *btf_type(5, K_FUNC, vlen=1,
                                                           size_or_type=2)),
                                   b"\0int\0x\0a\0"),
        "btf_datasec": raw_btf(datasec, b"\0x\0.data\0"),
        "btf_qmark_datasec": raw_btf(datasec, b"\0x\0?.data\0"),
        "btf_float": raw_btf(btf_type(1, K_FLOAT, size_or_type=4), b"\0float\0"),
        "btf_decl_tag": raw_btf((*int_type(0), *btf_type(1, K_VAR, size_or_type=1), 0,
                                 *btf_type(1, K_DECL_TAG, size_or_type=2), 0xFFFFFFFF),
                                b"\0tag\0"),
        "btf_type_tag": raw_btf((*int_type(0), *btf_type(1, K_TYPE_TAG, size_or_type=1),
                                 *btf_type(0, K_PTR, size_or_type=2)), b"\0tag\0"),
        "btf_enum64": raw_btf(btf_type(1, K_ENUM64, size_or_type=8), b"\0enum64\0"),
        # libbpf_probes.c load_local_storage_btf(): struct bpf_spin_lock { int val; };
        # struct val { int cnt; struct bpf_spin_lock l; };
        "local_storage": raw_btf((*int_type(0), *btf_type(1, K_STRUCT, vlen=1,
                                                          size_or_type=4), 15, 1, 0,
                                  *btf_type(15, K_STRUCT, vlen=2, size_or_type=8),
                                  19, 1, 0, 23, 2, 32),
                                 b"\0bpf_spin_lock\0val\0cnt\0l\0"),
    }


@cache
def btf_load_shape() -> AttrShape:
    """libbpf__load_raw_btf -> bpf_btf_load(raw, len, NULL): no log."""
    return AttrShape("BPF_BTF_LOAD", sizes("btf_load"), {"btf": POINTER, "btf_size": ANY})


def btf_is(call: Call, name: str) -> bool:
    blob = buffer(call, "btf")
    return (blob == probe_btfs()[name] and btf_load_shape().matches(call)
            and _u32(call, 16) == len(blob))


def _u32(call: Call, offset: int) -> int:
    attr = call.get("attr")
    if not isinstance(attr, bytes | bytearray) or len(attr) < offset + 4:
        return -1
    return int.from_bytes(attr[offset:offset + 4], "little")


def license_is_gpl(call: Call) -> bool:
    return buffer(call, "license").rstrip(b"\0") == b"GPL"


def value(enum: str, name: str) -> int:
    return enum_values(enum).get(name, -1)


def prog_type(name: str) -> int:
    return value("bpf_prog_type", "BPF_PROG_TYPE_" + name)


def attach_type(name: str) -> int:
    return value("bpf_attach_type", "BPF_" + name)


def prog_load_shape(wrapper_sizes: Iterable[int], type_name: str | frozenset[int],
                    insn_count: int, **fields: FieldValue) -> AttrShape:
    """A PROG_LOAD the way bpf_prog_load() fills it: type, insns, license, and what the
    opts set."""
    kind: FieldValue = type_name if isinstance(type_name, frozenset) else prog_type(type_name)
    return AttrShape("BPF_PROG_LOAD", wrapper_sizes, {
        "prog_type": kind, "insn_cnt": insn_count, "insns": POINTER, "license": POINTER,
        **fields})


def prog_load_is(call: Call, shape: AttrShape, program: tuple[Insn, ...]) -> bool:
    # The instructions first: a byte comparison that rejects most loads at once.
    return insns_are(call, program) and shape.matches(call) and license_is_gpl(call)
