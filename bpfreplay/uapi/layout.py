"""How a kernel struct is laid out: named fields at byte offsets (and bitfields).

Nested anonymous unions and structs are flattened: their members appear under their
own names at their absolute offsets (``target_fd`` and ``target_ifindex`` share an
offset); members of named nested structs get dotted names (``kprobe_multi.syms``).
"""

from __future__ import annotations

from typing import NamedTuple


class Field(NamedTuple):
    name: str
    offset: int  # bytes from the start of the struct
    size: int  # bytes; for a bitfield, the size of its storage unit
    type: str  # the C type as BTF names it: "__u32", "__aligned_u64", "char[16]", "__s32"
    bit_offset: int = 0  # bitfields: bit within the storage unit at ``offset``
    bit_size: int = 0  # bitfields: width in bits (0: not a bitfield)

    @property
    def end(self) -> int:
        return self.offset + self.size

    @property
    def signed(self) -> bool:
        return self.type.startswith(("__s", "s", "int", "long")) and "[" not in self.type


class StructLayout(NamedTuple):
    name: str
    size: int
    fields: tuple[Field, ...]

    def field(self, name: str) -> Field | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None

    def known_end(self) -> int:
        """The end of the last field: bytes past it are unknown to this table."""
        return max((f.end for f in self.fields), default=0)
