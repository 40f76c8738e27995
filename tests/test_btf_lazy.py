"""The lazily read vmlinux BTF (decode/btf_lazy.py) answers as bpftool reads the same
bytes: every type, the first type of a name and kind, the CO-RE candidates of an
essential name; corrupt bytes are refused with DecodeError only."""

from __future__ import annotations

import re
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpfreplay.decode.btf import Kind, dump_type, parse_btf
from bpfreplay.decode.btf_lazy import LazyBtf
from bpfreplay.errors import DecodeError
from bpfreplay.loader.core import essential_name_len
from tests.conftest import require_kernel, require_tool

VMLINUX = Path("/sys/kernel/btf/vmlinux")
_TYPE_LINE = re.compile(r"^\[(\d+)\] (\w+) '([^']*)'")


@pytest.fixture(scope="module")
def bpftool_types() -> list[tuple[int, str, str]]:
    """(id, kind, name) of every type, as `bpftool btf dump file` prints them."""
    require_kernel()
    bpftool = require_tool("bpftool")
    dump = subprocess.run([bpftool, "btf", "dump", "file", str(VMLINUX)], check=True,
                          capture_output=True, text=True).stdout
    types = []
    for line in dump.splitlines():
        m = _TYPE_LINE.match(line)
        if m:
            types.append((int(m[1]), m[2], m[3]))
    return types


@pytest.fixture(scope="module")
def lazy() -> LazyBtf:
    require_kernel()
    return LazyBtf(VMLINUX.read_bytes())


def test_types_dump_as_bpftool_dumps_them(lazy):
    """Every 7th type (and the last), each decoded on its own, as bpftool prints it."""
    bpftool = require_tool("bpftool")
    theirs: dict[int, list[str]] = {}
    current = 0
    for line in subprocess.run([bpftool, "btf", "dump", "file", str(VMLINUX)], check=True,
                               capture_output=True, text=True).stdout.splitlines():
        m = _TYPE_LINE.match(line)
        if m:
            current = int(m[1])
        theirs.setdefault(current, []).append(line)
    assert len(lazy) - 1 == max(theirs)
    for type_id in [*range(1, len(lazy), 7), len(lazy) - 1]:
        t = lazy.type(type_id)
        assert t is not None
        assert list(dump_type(lazy, t)) == theirs[type_id], type_id


def test_first_type_of_each_name_and_kind_is_bpftools(lazy, bpftool_types):
    first: dict[tuple[str, str], int] = {}
    first_any: dict[str, int] = {}
    for type_id, kind, name in bpftool_types:
        if name != "(anon)":
            first.setdefault((name, kind), type_id)
            first_any.setdefault(name, type_id)
    for (name, kind), type_id in first.items():
        found = lazy.by_name(name, Kind[kind])
        assert found is not None and found.id == type_id, (name, kind)
    for name, type_id in first_any.items():
        found = lazy.by_name(name)
        assert found is not None and found.id == type_id, name
    assert lazy.by_name("bpfreplay_no_such_type") is None
    assert lazy.by_name("") is None


def test_core_candidates_by_essential_name_are_bpftools(lazy, bpftool_types):
    """Every name bpftool shows, grouped by its essential name (without "___flavour")."""
    groups: dict[str, list[int]] = {}
    for type_id, _kind, name in bpftool_types:
        if name != "(anon)":
            groups.setdefault(name[:essential_name_len(name)], []).append(type_id)
    flavoured = [e for e, ids in groups.items() if any(
        "___" in lazy.type(i).name for i in ids)]
    checked = flavoured + sorted(groups)[::50]
    for essential in checked:
        assert lazy.ids_by_essential_name(essential, essential_name_len) == groups[essential]
    # a name that is itself flavoured has its own, shorter essential name
    assert lazy.ids_by_essential_name("bpfreplay___none", essential_name_len) == []


def test_split_btf_over_the_lazy_base_reads_its_base_names(lazy):
    """A module-like split BTF whose member names are base strings (offsets below the
    base's string section) decodes them through the lazy base."""
    task = lazy.by_name("task_struct", Kind.STRUCT)
    int_type = lazy.by_name("int", Kind.INT)
    assert task is not None and int_type is not None
    own = b"bpfreplay_split\0"
    base_len = lazy.header.str_len
    types = struct.pack("<III", base_len, (Kind.STRUCT << 24) | 1, 4)
    types += struct.pack("<III", task.name_off, int_type.id, 0)
    blob = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types),
                       len(own)) + types + own
    split = parse_btf(blob, base=lazy)
    t = split.type(len(lazy))
    assert t is not None and t.name == "bpfreplay_split"
    assert t.members[0].name == "task_struct"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_corrupt_btf_is_a_decode_error(data):
    """Mutations of a small real BTF blob (the reference object's): either a BTF that
    reads as the full parser reads it, or DecodeError."""
    from tests.conftest import ROOT

    obj = ROOT / "reference" / "libbpf-bootstrap" / "minimal.bpf.o"
    if not obj.exists():
        pytest.skip("reference not built (make reference)")
    from elftools.elf.elffile import ELFFile

    with open(obj, "rb") as f:
        blob = bytearray(ELFFile(f).get_section_by_name(".BTF").data())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(blob) - 1))
        blob[at] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        del blob[data.draw(st.integers(0, len(blob))):]
    blob = bytes(blob)
    try:
        full = parse_btf(blob)
    except DecodeError:
        full = None
    try:
        lazy_btf = LazyBtf(blob)
        types = list(lazy_btf.types)
    except DecodeError:
        return
    if full is not None:
        assert types == full.types
