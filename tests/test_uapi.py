"""The generated uapi table agrees with the running kernel's BTF, and the BTF parser
that produces it prints what bpftool prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bpfreplay.decode.btf import dump_btf, parse_btf
from bpfreplay.uapi import _generated as generated
from bpfreplay.uapi import attr_layout, cmd_value, struct_layout
from tests.conftest import ROOT, require_kernel, require_tool

VMLINUX = Path("/sys/kernel/btf/vmlinux")


@pytest.fixture(scope="module")
def vmlinux_btf():
    require_kernel()
    return parse_btf(VMLINUX.read_bytes())


def _gen_module():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import gen_uapi
    finally:
        sys.path.pop(0)
    return gen_uapi


def test_generated_layouts_match_running_kernel(vmlinux_btf):
    """Regenerate from the live BTF: every layout the committed table has must have the
    same size and the same fields at the same offsets (the kernel only ever appends)."""
    gen = _gen_module()
    live_attrs = gen.attr_layouts(vmlinux_btf)
    live_structs = gen.struct_layouts(vmlinux_btf)
    for table, live in ((generated.ATTR_LAYOUTS, live_attrs),
                        (generated.STRUCT_LAYOUTS, live_structs)):
        for name, layout in table.items():
            assert name in live, f"{name} is not in the running kernel's BTF"
            _, live_size, live_fields = live[name]
            committed = {f.name: tuple(f) for f in layout.fields}
            current = {f[0]: tuple(f) for f in live_fields}
            # an older kernel has the fields of its release: those after its last one
            live_end = max((f[1] + f[2] for f in current.values()), default=0)
            for field_name, field in committed.items():
                if field_name not in current and field[1] >= live_end:
                    continue  # appended by a later release
                assert current.get(field_name) == field, f"{name}.{field_name} moved"
            assert live_size >= min(layout.size, live_end)


def test_generated_enums_match_running_kernel(vmlinux_btf):
    """Every name the running kernel has keeps the committed value (an older kernel
    lacks the enums and names of later releases; checked: all must not be missing)."""
    live = _gen_module().enums(vmlinux_btf)
    compared = 0
    for name, values in generated.ENUMS.items():
        for key, value in values.items():
            if key in live.get(name, {}):
                assert live[name][key] == value, f"{name}.{key}"
                compared += 1
    assert compared > len(generated.ENUMS)


def test_well_known_layout_facts():
    """A few offsets stated by the uapi header itself (and by strace's struct decoders)."""
    prog_load = attr_layout(cmd_value("BPF_PROG_LOAD"))
    assert prog_load.field("insn_cnt").offset == 4
    assert prog_load.field("prog_name").offset == 48 and prog_load.field("prog_name").size == 16
    assert prog_load.field("log_true_size").offset == 140
    assert attr_layout(cmd_value("BPF_MAP_CREATE")).field("map_name").offset == 28
    link = attr_layout(cmd_value("BPF_LINK_CREATE"))
    assert link.field("kprobe_multi.syms").offset == 24
    assert link.field("perf_event.bpf_cookie").offset == 16
    perf = struct_layout("perf_event_attr")
    disabled = perf.field("disabled")
    assert (disabled.offset, disabled.bit_offset, disabled.bit_size) == (40, 0, 1)
    assert perf.field("config1").offset == 56


def test_btf_dump_of_vmlinux_equals_bpftool(vmlinux_btf):
    bpftool = require_tool("bpftool")
    theirs = subprocess.run([bpftool, "btf", "dump", "file", str(VMLINUX)], check=True,
                            capture_output=True, text=True).stdout.splitlines()
    ours = list(dump_btf(vmlinux_btf))
    assert len(ours) == len(theirs)
    for number, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert a == b, f"line {number + 1}"


def test_btf_dump_of_reference_object_equals_bpftool(minimal_object):
    from elftools.elf.elffile import ELFFile

    bpftool = require_tool("bpftool")
    with open(minimal_object, "rb") as f:
        blob = ELFFile(f).get_section_by_name(".BTF").data()
    theirs = subprocess.run([bpftool, "btf", "dump", "file", str(minimal_object)], check=True,
                            capture_output=True, text=True).stdout.splitlines()
    assert list(dump_btf(parse_btf(blob))) == theirs
