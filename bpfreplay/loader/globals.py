"""Global variables of an object, set before load the way a skeleton does
(``skel->bss->my_pid = getpid()``): found by name in the BTF of the data sections,
written into the data map's image."""

from __future__ import annotations

import os
from dataclasses import dataclass

from bpfreplay.decode.btf import Kind
from bpfreplay.errors import LoaderError
from bpfreplay.loader.kernel import LoadedObject
from bpfreplay.loader.spec import MapKind


@dataclass(frozen=True)
class Variable:
    name: str
    map_name: str  # the data map holding it (minimal_.bss)
    section: str  # .bss
    offset: int
    size: int
    signed: bool


def variables(obj: LoadedObject) -> dict[str, Variable]:
    """Every variable of the object's data sections, by name."""
    btf = obj.spec.btf
    if btf is None:
        return {}
    found: dict[str, Variable] = {}
    for m in obj.maps:
        if m.spec.kind == MapKind.USER:
            continue
        datasec = btf.by_name(m.spec.real_name, Kind.DATASEC)
        if datasec is None:
            continue
        for info in datasec.secinfos:
            var = btf.type(info.type)
            if var is None or var.kind != Kind.VAR:
                continue
            base = btf.skip_modifiers(var.ref)
            signed = bool(base is not None and base.kind == Kind.INT and base.encoding & 1)
            found[var.name] = Variable(var.name, m.spec.name, m.spec.real_name, info.offset,
                                       info.size, signed)
    return found


def set_global(obj: LoadedObject, assignment: str) -> Variable:
    """Apply NAME=VALUE: VALUE an integer (0x.. allowed) or ``self`` (our pid)."""
    name, sep, text = assignment.partition("=")
    if not sep or not name:
        raise LoaderError(f"--set {assignment!r}: expected NAME=VALUE")
    known = variables(obj)
    var = known.get(name)
    if var is None:
        names = ", ".join(sorted(known)) or "none"
        raise LoaderError(f"--set {name}: no global variable of that name in object "
                          f"'{obj.spec.name}' (its variables: {names})")
    if obj.loaded and obj.map(var.map_name).spec.kind == MapKind.RODATA:
        raise LoaderError(f"--set {name}: {var.section} is frozen after load")
    try:
        value = os.getpid() if text == "self" else int(text, 0)
    except ValueError:
        raise LoaderError(f"--set {name}={text}: not an integer (or 'self')") from None
    try:
        raw = value.to_bytes(var.size, "little", signed=var.signed or value < 0)
    except OverflowError:
        raise LoaderError(f"--set {name}={text}: does not fit in {var.size} bytes") from None
    obj.map(var.map_name).write(var.offset, raw)
    return var
