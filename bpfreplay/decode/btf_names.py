"""The name of a BTF type by id without decoding the whole blob: the lazy reader
(decode/btf_lazy.py) indexes the type section in one pass and decodes only the types
asked for (vmlinux has some 130,000; decoding them all for the few a program's kfunc
calls name would cost a second). Used for kfunc calls (``call bpf_task_acquire#N``),
whose BTF id is into the kernel's BTF.

Pure: bytes in, names out; a blob that is not BTF names nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from bpfreplay.errors import DecodeError


def type_namer(blob: bytes) -> Callable[[int], str | None]:
    """``name(type_id)``: the name of type ``type_id`` of this (base) BTF, None for an id
    it does not have or an anonymous type."""
    from bpfreplay.decode.btf_lazy import LazyBtf

    try:
        btf = LazyBtf(blob)
    except DecodeError:
        return lambda type_id: None

    def name(type_id: int) -> str | None:
        try:
            t = btf.type(type_id)
        except DecodeError:
            return None
        return (t.name or None) if t is not None else None

    return name
