"""The kernel's bpf ABI as data.

The layouts and enums come from ``_generated.py`` (made from the running kernel's
BTF by tools/gen_uapi.py); what the BTF cannot say — which u64 fields are user
pointers and how long the buffers behind them are — is in ``pointers.py``; the
``#define`` flag constants are in ``defines.py``. ``newer.py`` adds what the newest uapi
has and this kernel's BTF lacks (commands, enumerators, fields): the BTF always wins,
the supplement only adds.
"""

from __future__ import annotations

from functools import cache

from bpfreplay.uapi import _generated as generated
from bpfreplay.uapi import newer
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
# that carries log settings common to all commands (include/uapi/linux/bpf.h, newer than
# this kernel; struct bpf_common_attr is in newer.py).
BPF_COMMON_ATTRS = 1 << 16


def _is_sentinel(name: str) -> bool:
    """``__MAX_BPF_CMD``, ``PERF_TYPE_MAX``, ``NR_BTF_KINDS``: counts, not names of values
    (a newer kernel gives that value a real name)."""
    return name.startswith(("__", "NR_", "MAX_")) or name.endswith("_MAX")


@cache
def _merged_enum(enum: str) -> dict[str, int]:
    # The kernel's BTF wins; the newer uapi only adds names it does not have.
    values = dict(generated.ENUMS.get(enum, {}))
    for name, value in newer.ENUMS.get(enum, {}).items():
        values.setdefault(name, value)
    return values


@cache
def _enum_by_value(enum: str) -> dict[int, str]:
    names: dict[int, str] = {}
    for name, value in _merged_enum(enum).items():
        if not _is_sentinel(name):
            names.setdefault(value, name)  # the first name wins over later aliases
    return names


def enum_values(enum: str) -> dict[str, int]:
    """Name -> value of a kernel enum (``{}`` for an unknown enum), with the names of the
    newest uapi that this kernel's BTF lacks."""
    return _merged_enum(enum)


def enum_name(enum: str, value: int) -> str | None:
    """The name of ``value`` in kernel enum ``enum``, or None when it has none (counts
    such as ``__MAX_BPF_CMD`` are not names)."""
    return _enum_by_value(enum).get(value)


def cmd_name(cmd: int) -> str | None:
    """``BPF_PROG_LOAD`` for 5; None for a command this table does not know."""
    return enum_name("bpf_cmd", cmd & ~BPF_COMMON_ATTRS)


def cmd_value(name: str) -> int:
    """5 for ``BPF_PROG_LOAD`` or ``PROG_LOAD``; KeyError for an unknown name."""
    values = _merged_enum("bpf_cmd")
    return values[name] if name in values else values["BPF_" + name]


def _merge(layout: StructLayout | None, supplement: StructLayout | None,
           extra: tuple[Field, ...], size: int = 0) -> StructLayout | None:
    """``layout`` (from the kernel's BTF) with the newer fields it lacks appended; the
    newer layout only where the kernel has none."""
    base = layout or supplement
    if base is None:
        return None
    have = {f.name for f in base.fields}
    added = tuple(f for f in extra if f.name not in have)
    if not added and size <= base.size:
        return base
    fields = base.fields + added
    end = max(f.end for f in fields)
    return StructLayout(base.name, max(base.size, size, (end + 7) // 8 * 8), fields)


@cache
def _group_layout(group: str) -> StructLayout | None:
    return _merge(generated.ATTR_LAYOUTS.get(group), newer.ATTR_LAYOUTS.get(group),
                  newer.ATTR_FIELDS.get(group, ()))


def attr_layout(cmd: int) -> StructLayout | None:
    """The member of ``union bpf_attr`` that command ``cmd`` uses, or None."""
    name = cmd_name(cmd)
    if name is None:
        return None
    group = generated.COMMAND_GROUPS.get(name)
    return _group_layout(group) if group else None


@cache
def struct_layout(name: str) -> StructLayout | None:
    """Layout of a kernel struct the table knows (perf_event_attr, bpf_prog_info,
    bpf_common_attr, ...)."""
    return _merge(generated.STRUCT_LAYOUTS.get(name), newer.STRUCT_LAYOUTS.get(name),
                  newer.STRUCT_FIELDS.get(name, ()), newer.STRUCT_SIZES.get(name, 0))
