"""A ring-buffer or perf-buffer record made text: through a BTF struct when a type is
known, else a hex dump. Pure (bytes and BTF in, text out)."""

from __future__ import annotations

from dataclasses import dataclass

from bpfreplay.decode.btf import Btf, Kind
from bpfreplay.errors import BpfReplayError


@dataclass(frozen=True)
class EventType:
    """The BTF type records are decoded through."""

    btf: Btf
    type_id: int
    name: str  # as the user wrote it, e.g. "struct event"

    @property
    def size(self) -> int:
        return self.btf.type_size(self.type_id)


_KINDS = {"struct": Kind.STRUCT, "union": Kind.UNION, "enum": Kind.ENUM}


def find_event_type(btf: Btf, name: str) -> EventType:
    """``struct X``, ``union X`` or a bare name (a typedef, struct or union) in ``btf``;
    BpfReplayError naming what was looked for otherwise."""
    words = name.split()
    if len(words) == 2 and words[0] in _KINDS:
        found = btf.by_name(words[1], _KINDS[words[0]])
    elif len(words) == 1:
        found = next((t for kind in (Kind.TYPEDEF, Kind.STRUCT, Kind.UNION)
                      if (t := btf.by_name(words[0], kind)) is not None), None)
    else:
        raise BpfReplayError(f"--event {name!r}: expected 'struct NAME', 'union NAME' or "
                             "a type name")
    if found is None:
        raise BpfReplayError(f"--event {name!r}: no such type in the BTF")
    return EventType(btf, found.id, name)


def format_event(event_type: EventType | None, data: bytes) -> str:
    """One record as text: ``{pid = 42, comm = "true", ...}`` through the type (a
    record shorter than the type is zero-padded and says so; longer, its extra bytes
    shown in hex), or a hex dump without one."""
    if event_type is None:
        return hex_dump(data)
    from bpfreplay.decode.btf_value import format_btf_value
    from bpfreplay.errors import DecodeError

    size = event_type.size
    try:
        text = format_btf_value(event_type.btf, event_type.type_id, data[:size].ljust(size,
                                                                                 b"\0"))
    except DecodeError as e:
        return f"({e}) " + hex_dump(data)
    if len(data) < size:
        text += f" (record of {len(data)} bytes, the type has {size})"
    elif len(data) > size:
        text += f" +{data[size:].hex()}"
    return text


def hex_dump(data: bytes, width: int = 16) -> str:
    """Offset, hex bytes and printable ASCII, one line per ``width`` bytes."""
    lines = []
    for at in range(0, len(data), width):
        chunk = data[at:at + width]
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"{at:08x}  {chunk.hex(' '):<{width * 3 - 1}}  {text}")
    return "\n".join(lines) if lines else "(empty record)"
