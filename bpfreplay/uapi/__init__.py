"""The kernel's bpf ABI as data.

The layouts and enums come from ``_generated.py`` (made from the running kernel's
BTF by tools/gen_uapi.py); what the BTF cannot say — which u64 fields are user
pointers and how long the buffers behind them are — is in ``pointers.py``.
"""

from __future__ import annotations

from functools import cache

from bpfreplay.uapi import _generated as generated
from bpfreplay.uapi.layout import Field, StructLayout

__all__ = [
    "BPF_COMMON_ATTRS",
    "Field",
    "StructLayout",
    "attr_layout",
    "cmd_name",
    "cmd_value",
    "enum_name",
    "enum_values",
    "struct_layout",
]

# bpf(cmd | BPF_COMMON_ATTRS, attr, size, common_attr, common_size): the 5-argument form
# that carries log settings common to all commands (newer than the kernel this table was
# generated from; value from the proposed uapi).
BPF_COMMON_ATTRS = 1 << 16

# struct bpf_common_attr as proposed with BPF_COMMON_ATTRS, used when the kernel's BTF
# does not have it yet.
_COMMON_ATTR_FALLBACK = StructLayout(
    "bpf_common_attr",
    20,
    (
        Field("log_buf", 0, 8, "__u64"),
        Field("log_size", 8, 4, "__u32"),
        Field("log_level", 12, 4, "__u32"),
        Field("log_true_size", 16, 4, "__u32"),
    ),
)


@cache
def _enum_by_value(enum: str) -> dict[int, str]:
    names: dict[int, str] = {}
    for name, value in generated.ENUMS.get(enum, {}).items():
        names.setdefault(value, name)  # the first name wins over later aliases
    return names


def enum_values(enum: str) -> dict[str, int]:
    """Name -> value of a kernel enum (``{}`` for an unknown enum)."""
    return generated.ENUMS.get(enum, {})


def enum_name(enum: str, value: int) -> str | None:
    """The name of ``value`` in kernel enum ``enum``, or None when it has none."""
    return _enum_by_value(enum).get(value)


def cmd_name(cmd: int) -> str | None:
    """``BPF_PROG_LOAD`` for 5; None for a command this table does not know."""
    return enum_name("bpf_cmd", cmd & ~BPF_COMMON_ATTRS)


def cmd_value(name: str) -> int:
    """5 for ``BPF_PROG_LOAD`` or ``PROG_LOAD``; KeyError for an unknown name."""
    values = generated.ENUMS["bpf_cmd"]
    return values[name] if name in values else values["BPF_" + name]


def attr_layout(cmd: int) -> StructLayout | None:
    """The member of ``union bpf_attr`` that command ``cmd`` uses, or None."""
    name = cmd_name(cmd)
    if name is None:
        return None
    group = generated.COMMAND_GROUPS.get(name)
    return generated.ATTR_LAYOUTS.get(group) if group else None


def struct_layout(name: str) -> StructLayout | None:
    """Layout of a kernel struct the table knows (perf_event_attr, bpf_prog_info, ...)."""
    layout = generated.STRUCT_LAYOUTS.get(name)
    if layout is None and name == "bpf_common_attr":
        return _COMMON_ATTR_FALLBACK
    return layout
