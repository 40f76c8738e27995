"""``struct perf_event_attr`` by name, and the perf ioctl requests.

What libbpf gives perf_event_open(): a tracepoint (type PERF_TYPE_TRACEPOINT, config =
the tracepoint's id, which only tracefs can turn into a name: the caller passes
``tracepoint_name``), a kprobe/uprobe PMU event (type = the PMU's dynamic number, which
only sysfs knows: the caller passes ``pmu_name``; config1 is then the path or function
name pointer and config2 the offset), or a software event.

Bitfields: every one is a FieldValue (role ``bit``); ``format_attr`` prints the set
ones only (strace -v prints all 38 of them, mostly zeros). The reserved bits are shown
only when non-zero, minus the bits a newer uapi has named. Union members are chosen
as the kernel reads them: sample_freq with ``freq``, wakeup_watermark with
``watermark``, bp_addr/bp_len for breakpoints, kprobe_func/uprobe_path/probe_offset
for the probe PMUs, config1/config2 otherwise.
"""

from __future__ import annotations

from collections.abc import Callable

from bpfreplay.decode.attr_fields import (
    BIT,
    COUNT,
    ENUM,
    FLAGS,
    ID,
    INT,
    POINTER,
    SIZE,
    DecodedAttr,
    Spec,
    ViewField,
    as_bytes,
    decode_view,
    flags_text,
    peek,
    read_uint,
    value_name,
)
from bpfreplay.uapi import struct_layout
from bpfreplay.uapi.layout import Field, StructLayout

_S = Spec
_HEX = _S(INT, style="hex")

SPECS: dict[str, Spec] = {
    "type": _S(ENUM, "enum:perf_type_id"),
    "size": _S(SIZE),
    "sample_period": _S(INT), "sample_freq": _S(INT),
    "sample_type": _S(FLAGS, "enum:perf_event_sample_format"),
    "read_format": _S(FLAGS, "enum:perf_event_read_format"),
    "wakeup_events": _S(COUNT), "wakeup_watermark": _S(SIZE),
    "bp_type": _S(INT),
    "bp_addr": _S(POINTER), "kprobe_func": _S(POINTER), "uprobe_path": _S(POINTER), "config1": _HEX,
    "bp_len": _S(INT), "kprobe_addr": _HEX, "probe_offset": _HEX, "config2": _HEX,
    "branch_sample_type": _S(FLAGS, "flags:perf_branch_sample_type"),
    "sample_regs_user": _HEX, "sample_stack_user": _S(SIZE), "clockid": _S(INT),
    "sample_regs_intr": _HEX, "aux_watermark": _S(SIZE), "sample_max_stack": _S(COUNT),
    "aux_sample_size": _S(SIZE), "sig_data": _HEX, "config3": _HEX, "config4": _HEX,
    "__reserved_1": _HEX, "__reserved_2": _HEX, "__reserved_3": _HEX,
}

_PRECISE_IP = ("arbitrary skid", "constant skid", "requested to have 0 skid",
               "must have 0 skid")
_SIZE_VER0 = 64  # PERF_ATTR_SIZE_VER0: what size 0 means
_PMU_TYPE_SHIFT = 32  # PERF_TYPE_HARDWARE/HW_CACHE config: PMU type in the upper half


def _type_name(value: int) -> str | None:
    from bpfreplay.uapi import enum_name

    return enum_name("perf_type_id", value)


def _config(attr_type: str | None, value: int, pmu: str | None,
            tracepoint_name: Callable[[int], str | None] | None) -> tuple[Spec, str]:
    """The Spec and any annotation of ``config`` for this event type."""
    if attr_type == "PERF_TYPE_SOFTWARE":
        return _S(ENUM, "enum:perf_sw_ids"), ""
    if attr_type == "PERF_TYPE_TRACEPOINT":
        name = tracepoint_name(value) if tracepoint_name is not None else None
        return _S(ID), f" /* {name} */" if name else ""
    if attr_type in ("PERF_TYPE_HARDWARE", "PERF_TYPE_HW_CACHE"):
        return _S(ENUM), ""  # the text is made by _hardware_config_text
    if pmu in ("kprobe", "uprobe"):
        return _S(INT), " /* retprobe */" if value & 1 else ""
    return _HEX, ""


def _hardware_config_text(attr_type: str, value: int) -> str:
    parts = []
    if value >> _PMU_TYPE_SHIFT:
        parts.append(f"{value >> _PMU_TYPE_SHIFT:#x}<<{_PMU_TYPE_SHIFT}")
    low = value & 0xFFFFFFFF
    if attr_type == "PERF_TYPE_HARDWARE":
        parts.append(value_name("enum:perf_hw_id", low) or str(low))
    else:
        if low >> 24:
            parts.append(f"{low >> 24:#x}<<24")
        for table, shift in (("perf_hw_cache_op_result_id", 16), ("perf_hw_cache_op_id", 8),
                             ("perf_hw_cache_id", 0)):
            part = low >> shift & 0xFF
            name = value_name("values:" + table, part) or str(part)
            parts.append(f"{name}<<{shift}" if shift else name)
    return "|".join(parts)


def _reserved_mask(layout: StructLayout, reserved: Field) -> int:
    """The bits of ``reserved``'s unit that no named bitfield claims (a newer uapi names
    bits the kernel's BTF still calls reserved)."""
    mask = ((1 << reserved.bit_size) - 1) << reserved.bit_offset
    for f in layout.fields:
        if f.bit_size and f.offset == reserved.offset and f is not reserved and \
                not f.name.startswith("__reserved"):
            mask &= ~(((1 << f.bit_size) - 1) << f.bit_offset)
    return mask >> reserved.bit_offset


def decode_perf_event_attr(attr: bytes, *,
                           tracepoint_name: Callable[[int], str | None] | None = None,
                           pmu_name: Callable[[int], str | None] | None = None,
                           ) -> DecodedAttr:
    """Every field of a perf_event_attr. ``attr`` as recorded (its own ``size`` field says
    how many bytes the kernel reads; 0 means PERF_ATTR_SIZE_VER0). ``tracepoint_name(id)``
    names a tracepoint id, ``pmu_name(type)`` a dynamic PMU type ("uprobe", "kprobe"):
    both are the caller's lookups (tracefs, sysfs), so that decoding does no I/O."""
    data = as_bytes(attr, "a perf_event_attr")
    layout = struct_layout("perf_event_attr")
    assert layout is not None  # the generated table always has it
    field = layout.field
    declared = read_uint(data, 4, 4) if len(data) >= 8 else 0
    size = declared or (min(len(data), _SIZE_VER0) if len(data) < 8 else _SIZE_VER0)
    notes: tuple[str, ...] = ()
    if declared and declared < _SIZE_VER0:
        notes += (f"size {declared} is below PERF_ATTR_SIZE_VER0: the kernel answers E2BIG",)
    type_value = peek(data, field("type"))
    attr_type = _type_name(type_value)
    pmu = pmu_name(type_value) if pmu_name is not None and attr_type is None else None
    freq = peek(data, field("freq"))
    watermark = peek(data, field("watermark"))

    drop = {"aux_action", "sample_period" if freq else "sample_freq",
            "wakeup_events" if watermark else "wakeup_watermark"}
    if attr_type == "PERF_TYPE_BREAKPOINT":
        config1, config2 = "bp_addr", "bp_len"
    elif pmu == "kprobe":
        config1 = "kprobe_func"
        config2 = "probe_offset" if peek(data, field("kprobe_func")) else "kprobe_addr"
    elif pmu == "uprobe":
        config1, config2 = "uprobe_path", "probe_offset"
    else:
        config1, config2 = "config1", "config2"
    drop |= {"bp_addr", "kprobe_func", "uprobe_path", "config1"} - {config1}
    drop |= {"bp_len", "kprobe_addr", "probe_offset", "config2"} - {config2}

    view = []
    for f in layout.fields:
        if f.name in drop:
            continue
        spec = SPECS.get(f.name, _S(BIT) if f.bit_size else _S(INT))
        annotate = ""
        if f.name.startswith("__reserved"):
            value = peek(data, f)
            if f.bit_size:
                value &= _reserved_mask(layout, f)
            if not value:
                continue  # reserved and zero: nothing to say
        if f.name == "type" and attr_type is None and pmu:
            annotate = f" /* {pmu} PMU */"
        elif f.name == "size":
            ver = value_name("values:perf_attr_size", peek(data, f) or _SIZE_VER0)
            annotate = f" /* {ver} */" if ver else ""
        elif f.name == "config":
            spec, annotate = _config(attr_type, peek(data, f), pmu, tracepoint_name)
        elif f.name == "precise_ip":
            spec = _S(ENUM)
            annotate = f" /* {_PRECISE_IP[peek(data, f) & 3]} */"
        elif f.name == "bp_type" and attr_type == "PERF_TYPE_BREAKPOINT":
            spec = _S(ENUM, "values:hw_breakpoint_type")
        elif f.name == "clockid" and peek(data, field("use_clockid")):
            spec = _S(ENUM, "values:clockid")
        view.append(ViewField(f, spec, annotate))
    decoded = decode_view("perf_event_attr", size, data, view, notes)
    if attr_type in ("PERF_TYPE_HARDWARE", "PERF_TYPE_HW_CACHE"):
        decoded = _with_hardware_config(decoded, attr_type)
    return decoded


def _with_hardware_config(decoded: DecodedAttr, attr_type: str) -> DecodedAttr:
    from dataclasses import replace

    fields = tuple(
        replace(f, text=_hardware_config_text(attr_type, f.raw))
        if f.name == "config" and isinstance(f.raw, int) and f.name not in decoded.cut else f
        for f in decoded.fields)
    return replace(decoded, fields=fields)


def perf_ioctl_name(request: int) -> str | None:
    """``PERF_EVENT_IOC_ENABLE`` for 0x2400; None for a request that is not a perf one."""
    from bpfreplay.uapi import defines

    for name, value in defines.VALUE_SETS["perf_event_ioc"].items():
        if value == request:
            return name
    return None


def perf_open_flags(flags: int) -> str:
    """perf_event_open()'s flags argument: ``PERF_FLAG_FD_CLOEXEC``."""
    return flags_text("flags:perf_event_open_flags", flags)


__all__ = ["decode_perf_event_attr", "perf_ioctl_name", "perf_open_flags"]
