"""Global-data values a reference application chose, taken from its trace for
``bpfreplay run --compare`` without ``--set``.

A skeleton's application writes its globals into the data maps' images before
``bpf_object__load`` (``skel->bss->my_pid = getpid()``); libbpf 1.1.2's
``bpf_object__populate_internal_map()`` then hands each image to the kernel as the
map's one value in a BPF_MAP_UPDATE_ELEM. That update, matched to its map by the
map name of the BPF_MAP_CREATE that made the fd, shows the image the application
built. Only the variables whose bytes differ from the object's own initial image are
taken (the DATASEC of the map in the object's BTF says where each variable is); the
rest of every image is still built by our loader and compared. A value equal to the
pid of the reference process that made the update is its own pid: we take ours.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from bpfreplay.loader.spec import MapKind

# Data maps whose images an application writes: .data/.bss/.rodata and their custom
# .data.*/.bss.*/.rodata.* sections. .kconfig is filled by the loader from the kernel.
_DATA_KINDS = (MapKind.DATA, MapKind.BSS, MapKind.RODATA)


@dataclass(frozen=True)
class ReferenceImage:
    """The first value the reference gave a map of this kernel name."""

    map_name: str  # as BPF_MAP_CREATE carried it: "minimal_.bss"
    value: bytes
    pid: int  # the reference process that wrote it


@dataclass(frozen=True)
class CarriedValue:
    """A variable whose value we took from the reference."""

    section: str  # .bss
    name: str
    reference: int | bytes  # what the reference wrote
    ours: int | bytes  # what we write (our pid for the reference's pid)
    is_pid: bool

    def describe(self) -> str:
        def show(value: int | bytes) -> str:
            if isinstance(value, int):
                return str(value)
            text = value.split(b"\0", 1)[0]
            if text and text.isascii() and text.decode().isprintable() \
                    and not any(value[len(text):]):
                return '"' + text.decode() + '"'
            return "0x" + value.hex()

        text = f"{self.section} {self.name} = {show(self.reference)}"
        if self.is_pid:
            text += f" -> our pid {self.ours}"
        return text


def reference_images(trace_path: str) -> dict[str, ReferenceImage]:
    """Each map's first BPF_MAP_UPDATE_ELEM in the trace, by the name its
    BPF_MAP_CREATE gave it (fds followed by decode/fds.py's FdTable, through closes
    and duplicates, per process)."""
    from bpfreplay.decode.fds import FdTable, attr_field, command
    from bpfreplay.trace import read_trace

    table = FdTable()
    images: dict[str, ReferenceImage] = {}
    with read_trace(trace_path) as trace:
        for index, call in enumerate(trace.calls()):
            if command(call) == "BPF_MAP_UPDATE_ELEM":
                _note_update(call, table, images, attr_field(call, "map_fd"))
            table.step(call, index)
    return images


def _note_update(call: dict[str, Any], table: Any, images: dict[str, ReferenceImage],
                 map_fd: int) -> None:
    if call.get("errno"):
        return
    pid = call.get("pid")
    life = table.open.get((pid, map_fd))
    created = life.root.call if life is not None else None
    if created is None:
        return
    name = _map_create_name(created)
    value = (call.get("in") or {}).get("value")
    if name and isinstance(value, bytes) and name not in images:
        images[name] = ReferenceImage(name, value, pid if isinstance(pid, int) else 0)


def _map_create_name(call: dict[str, Any]) -> str:
    from bpfreplay.decode.fds import command
    from bpfreplay.uapi import attr_layout

    if command(call) != "BPF_MAP_CREATE" or not isinstance(call.get("attr"), bytes):
        return ""
    layout = attr_layout(call["cmd"])
    field = layout.field("map_name") if layout else None
    if field is None:
        return ""
    return call["attr"][field.offset:field.end].split(b"\0", 1)[0].decode("latin-1")


def carry_values(obj: Any, images: dict[str, ReferenceImage]) -> list[CarriedValue]:
    """Write into ``obj``'s data-map images (opened, not yet loaded) every variable the
    reference gave a value other than the object's initial one; returns them in map
    and offset order."""
    from bpfreplay.loader.globals import variables

    by_map: dict[str, list[Any]] = {}
    for var in variables(obj).values():
        by_map.setdefault(var.map_name, []).append(var)
    integers = _integer_variables(obj)
    carried = []
    for m in obj.maps:
        if m.spec.kind not in _DATA_KINDS:
            continue
        image = images.get(m.spec.kernel_name)
        if image is None:
            continue
        initial = (m.spec.initial_value or b"").ljust(m.spec.value_size, b"\0")
        for var in sorted(by_map.get(m.spec.name, []), key=lambda v: v.offset):
            end = var.offset + var.size
            theirs = image.value[var.offset:end]
            if len(theirs) != var.size or theirs == initial[var.offset:end]:
                continue
            integer = (m.spec.real_name, var.offset) in integers
            carried.append(_carry(m, var, theirs, image.pid, integer))
    return carried


def _integer_variables(obj: Any) -> set[tuple[str, int]]:
    """(section, offset) of the variables whose type is an integer (or an enum)."""
    from bpfreplay.decode.btf import Kind

    btf = obj.spec.btf
    found: set[tuple[str, int]] = set()
    if btf is None:
        return found
    for m in obj.maps:
        datasec = btf.by_name(m.spec.real_name, Kind.DATASEC)
        for info in datasec.secinfos if datasec is not None else ():
            var = btf.type(info.type)
            base = btf.skip_modifiers(var.ref) if var is not None else None
            if base is not None and base.kind in (Kind.INT, Kind.ENUM, Kind.ENUM64):
                found.add((m.spec.real_name, info.offset))
    return found


def _carry(m: Any, var: Any, theirs: bytes, reference_pid: int,
           integer: bool) -> CarriedValue:
    if integer and var.size in (1, 2, 4, 8):
        value = int.from_bytes(theirs, "little", signed=var.signed)
        if var.size >= 4 and reference_pid and value == reference_pid:
            ours = os.getpid()
            m.write(var.offset, ours.to_bytes(var.size, "little", signed=var.signed))
            return CarriedValue(var.section, var.name, value, ours, is_pid=True)
        m.write(var.offset, theirs)
        return CarriedValue(var.section, var.name, value, value, is_pid=False)
    m.write(var.offset, theirs)
    return CarriedValue(var.section, var.name, theirs, theirs, is_pid=False)
