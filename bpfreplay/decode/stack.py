"""The call chain ``record --stack`` keeps with each call: its text, and the libbpf
function behind the call (pure: frames in, names out).

A frame (docs/trace-format.md, "stack") names its module, its file address, its symbol
and the functions inlined there. The *API function* of a call is the innermost frame in
a libbpf shared object whose symbol the library exports: first among libbpf's object
and probe API (``bpf_object__load``, ``bpf_program__attach_perf_event_opts``,
``libbpf_probe_bpf_helper``: names with ``__`` or ``libbpf_``), else the innermost
exported one (a bpf.h wrapper such as ``bpf_map_update_elem`` that the program itself
called).
"""

from __future__ import annotations

import os
from typing import Any

Frame = dict[str, Any]


def frame_lines(stack: object) -> list[str]:
    """One line per function, innermost first: the functions inlined at a frame's pc
    (``name (inlined)``) before the function the symbol table names."""
    if not isinstance(stack, list):
        return []
    lines = []
    for number, frame in enumerate(stack):
        if not isinstance(frame, dict):
            lines.append(f"#{number} <not a frame: {frame!r}>")
            continue
        pc = frame.get("pc")
        where = f"{pc:#x}" if isinstance(pc, int) else "?"
        for name in frame.get("inlined") or ():
            lines.append(f"#{number} {where} {name} (inlined)")
        notes = " [by frame pointer]" if frame.get("frame_pointer") else ""
        if isinstance(frame.get("error"), str):
            notes += f" [walk ended: {frame['error']}]"
        lines.append(f"#{number} {where} {_frame_name(frame)}{notes}")
    return lines


def _frame_name(frame: Frame) -> str:
    module = frame.get("module")
    base = os.path.basename(module) if isinstance(module, str) else "?"
    offset = frame.get("offset")
    at = f"{base}+{offset:#x}" if isinstance(offset, int) else base
    symbol = frame.get("symbol")
    if isinstance(symbol, str):
        plus = frame.get("symbol_offset")
        plus_text = f"+{plus:#x}" if isinstance(plus, int) else ""
        return f"{symbol}{plus_text} ({at})"
    return at


def _is_libbpf(frame: Frame) -> bool:
    module = frame.get("module")
    return isinstance(module, str) and os.path.basename(module).startswith("libbpf.so")


def api_function(stack: object) -> str | None:
    if not isinstance(stack, list):
        return None
    exported = [f["symbol"] for f in stack
                if isinstance(f, dict) and f.get("exported") and _is_libbpf(f)
                and isinstance(f.get("symbol"), str)]
    for name in exported:
        if "__" in name or name.startswith("libbpf_"):
            return name
    return exported[0] if exported else None


# The phase an API function's calls belong to; first match wins.
_PHASE_WORDS = (
    ("attach", "attach"), ("detach", "teardown"), ("destroy", "teardown"),
    ("__close", "teardown"), ("__unload", "teardown"), ("__free", "teardown"),
    ("unpin", "teardown"),
    ("bpf_map__lookup", "runtime"), ("bpf_map__update", "runtime"),
    ("bpf_map__delete", "runtime"), ("bpf_map__get_next_key", "runtime"),
    ("ring_buffer__", "runtime"), ("perf_buffer__", "runtime"), ("user_ring_buffer__", "runtime"),
    ("bpf_object__", "object"), ("bpf_map__", "object"), ("btf__", "object"),
    ("bpf_program__", "object"),
)


def api_phase(name: str | None) -> str | None:
    """The phase a call made inside ``name`` belongs to, if the name says it."""
    if name is None or name.startswith("libbpf_probe_"):
        return None
    for word, phase in _PHASE_WORDS:
        if word in name:
            return phase
    return None
