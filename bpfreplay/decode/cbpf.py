"""Classic BPF (``struct sock_filter``, what SO_ATTACH_FILTER and
SO_ATTACH_REUSEPORT_CBPF attach) as strace prints it: ``BPF_STMT(code, k)`` for an
instruction whose jump offsets are both 0, ``BPF_JUMP(code, k, jt, jf)`` otherwise, the
opcode as its named parts (include/uapi/linux/filter.h, bpf_common.h) and the offsets
of load-absolute extensions relative to SKF_AD_OFF, SKF_NET_OFF and SKF_LL_OFF.

Pure: bytes in, text out; never raises on any opcode (unknown parts print as
``0x.. /* BPF_??? */``).
"""

from __future__ import annotations

import struct

SOCK_FILTER_SIZE = 8  # struct sock_filter { __u16 code; __u8 jt, jf; __u32 k; }
_SOCK_FILTER = struct.Struct("<HBBI")
SOCK_FPROG_SIZE = 16  # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
BPF_MAXINSNS = 4096   # the kernel refuses longer classic programs (sk_chk_filter)

_CLASSES = {0x00: "BPF_LD", 0x01: "BPF_LDX", 0x02: "BPF_ST", 0x03: "BPF_STX",
            0x04: "BPF_ALU", 0x05: "BPF_JMP", 0x06: "BPF_RET", 0x07: "BPF_MISC"}
_SIZES = {0x00: "BPF_W", 0x08: "BPF_H", 0x10: "BPF_B", 0x18: "BPF_DW"}
_MODES = {0x00: "BPF_IMM", 0x20: "BPF_ABS", 0x40: "BPF_IND", 0x60: "BPF_MEM",
          0x80: "BPF_LEN", 0xA0: "BPF_MSH"}
_SOURCES = {0x00: "BPF_K", 0x08: "BPF_X"}
_ALU_OPS = {0x00: "BPF_ADD", 0x10: "BPF_SUB", 0x20: "BPF_MUL", 0x30: "BPF_DIV",
            0x40: "BPF_OR", 0x50: "BPF_AND", 0x60: "BPF_LSH", 0x70: "BPF_RSH",
            0x80: "BPF_NEG", 0x90: "BPF_MOD", 0xA0: "BPF_XOR"}
_JMP_OPS = {0x00: "BPF_JA", 0x10: "BPF_JEQ", 0x20: "BPF_JGT", 0x30: "BPF_JGE",
            0x40: "BPF_JSET"}
_RVALS = {0x00: "BPF_K", 0x08: "BPF_X", 0x10: "BPF_A"}
_MISC_OPS = {0x00: "BPF_TAX", 0x80: "BPF_TXA"}

# Load-absolute offsets past these bases are not packet offsets (linux/filter.h).
SKF_AD_OFF, SKF_NET_OFF, SKF_LL_OFF = -0x1000, -0x100000, -0x200000
_SKF_AD = {0: "PROTOCOL", 4: "PKTTYPE", 8: "IFINDEX", 12: "NLATTR", 16: "NLATTR_NEST",
           20: "MARK", 24: "QUEUE", 28: "HATYPE", 32: "RXHASH", 36: "CPU",
           40: "ALU_XOR_X", 44: "VLAN_TAG", 48: "VLAN_TAG_PRESENT", 52: "PAY_OFFSET",
           56: "RANDOM", 60: "VLAN_TPID"}  # 64 is SKF_AD_MAX: a bound, not an extension


def _hex(value: int) -> str:
    return f"{value:#x}" if value else "0"


def _part(table: dict[int, str], bits: int) -> str:
    return table.get(bits) or f"{bits:#x} /* BPF_??? */"


def code_text(code: int) -> str:
    """``BPF_LD|BPF_H|BPF_ABS`` for 0x28."""
    cls = code & 0x07
    parts = [_CLASSES[cls]]
    if cls in (0x00, 0x01):
        parts += [_part(_SIZES, code & 0x18), _part(_MODES, code & 0xE0)]
    elif cls in (0x04, 0x05):
        parts += [_SOURCES[code & 0x08], _part(_ALU_OPS if cls == 0x04 else _JMP_OPS,
                                               code & 0xF0)]
    elif cls == 0x06:
        parts.append(_part(_RVALS, code & 0x18))
        rest = code & ~0x1F & 0xFFFF
        if rest:
            parts.append(f"{rest:#x} /* BPF_??? */")
        return "|".join(parts)
    elif cls == 0x07:
        parts.append(_part(_MISC_OPS, code & 0xF8))
        return "|".join(parts)
    rest = code & ~0xFF & 0xFFFF if cls in (0x00, 0x01, 0x04, 0x05) else code & 0xFFF8
    if rest:
        parts.append(f"{rest:#x} /* BPF_??? */")
    return "|".join(parts)


def _k_text(code: int, k: int) -> str:
    if code & 0x07 == 0x00 and code & 0xE0 == 0x20:  # BPF_LD|BPF_ABS: maybe an extension
        signed = k - (1 << 32) if k & 0x80000000 else k
        if signed >= 0:
            return _hex(k)
        if signed >= SKF_AD_OFF:
            offset = signed - SKF_AD_OFF
            name = _SKF_AD.get(offset)
            return f"SKF_AD_OFF+SKF_AD_{name}" if name else \
                f"SKF_AD_OFF+{offset:#x} /* SKF_AD_??? */"
        if signed >= SKF_NET_OFF:
            return f"SKF_NET_OFF+{signed - SKF_NET_OFF}"
        if signed >= SKF_LL_OFF:
            return f"SKF_LL_OFF+{signed - SKF_LL_OFF}"
    return _hex(k)


def filter_insns(data: bytes) -> list[str]:
    """Each whole ``struct sock_filter`` in ``data`` as ``BPF_STMT(...)``/``BPF_JUMP(...)``."""
    out = []
    for code, jt, jf, k in _SOCK_FILTER.iter_unpack(data[:len(data) // 8 * 8]):
        if jt or jf:
            out.append(f"BPF_JUMP({code_text(code)}, {_k_text(code, k)}, {_hex(jt)}, "
                       f"{_hex(jf)})")
        else:
            out.append(f"BPF_STMT({code_text(code)}, {_k_text(code, k)})")
    return out


def parse_sock_fprog(optval: bytes) -> tuple[int, int] | None:
    """(len, filter address) of a ``struct sock_fprog``, None when ``optval`` is shorter."""
    if len(optval) < SOCK_FPROG_SIZE:
        return None
    length, address = struct.unpack_from("<H6xQ", optval)
    return length, address
