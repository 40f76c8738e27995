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
            if name not in live and table is generated.ATTR_LAYOUTS \
                    and not _command_here(vmlinux_btf, name):
                continue  # the attr of a command a later release added (token_create)
            if name not in live and table is generated.STRUCT_LAYOUTS \
                    and name in _LATER_STRUCTS:
                continue
            assert name in live, f"{name} is not in the running kernel's BTF"
            _, live_size, live_fields = live[name]
            committed = {f.name: tuple(f) for f in layout.fields}
            current = {f[0]: tuple(f) for f in live_fields}
            # an older kernel has the fields of its release: those after its last one
            live_end = max((f[1] + f[2] for f in current.values()), default=0)
            places = {(f[1], f[2], f[4], f[5]) for f in current.values()}
            groups = {n.split(".")[0] for n in current}
            reserved = [f for n, f in current.items() if n.startswith("__reserved")]
            for field_name, field in committed.items():
                if field_name.startswith("__reserved"):
                    continue  # the space later releases take bits from
                if field_name not in current and field[1] >= live_end:
                    continue  # appended by a later release
                if field_name not in current and not field[5] and not any(
                        f[1] < field[1] + field[2] and field[1] < f[1] + f[2]
                        for f in current.values()):
                    continue  # in padding this kernel leaves unnamed (a later field)
                if field_name not in current and field[5] and any(
                        r[1] == field[1] and r[4] <= field[4] < r[4] + max(r[5], 1)
                        or r[1] <= field[1] < r[1] + r[2] and not r[5] for r in reserved):
                    continue  # a flag bit a later release took from reserved bits
                    # (perf_event_attr.build_id on 5.10, aux_start_paused on 6.1)
                if field_name not in current and (field[1], field[2], field[4],
                                                  field[5]) in places:
                    continue  # a union member a later release added beside a field
                    # this kernel has (6.1: prog_attach's target_fd, not target_ifindex)
                if "." in field_name and field_name.split(".")[0] not in groups:
                    continue  # a member of a union member this kernel does not have
                    # (link_create.netfilter on 6.1, link_create.kprobe_multi on 5.10)
                assert current.get(field_name) == field, f"{name}.{field_name} moved"
            assert live_size >= min(layout.size, live_end)


# Structs of the uapi table that releases after 5.10 added (struct bpf_core_relo: 5.17).
_LATER_STRUCTS = ("bpf_core_relo",)


def _command_here(btf, group: str) -> bool:
    """Whether the running kernel's enum bpf_cmd has a command using the attr group
    (COMMAND_GROUPS: BPF_TOKEN_CREATE for token_create)."""
    commands = _gen_module().enums(btf).get("bpf_cmd", {})
    users = [cmd for cmd, g in generated.COMMAND_GROUPS.items() if g == group]
    return not users or any(cmd in commands for cmd in users)


def test_generated_enums_match_running_kernel(vmlinux_btf):
    """Every name the running kernel has keeps the committed value (an older kernel
    lacks the enums and names of later releases; checked: all must not be missing),
    except the count sentinels (__MAX_BPF_ATTACH_TYPE, PERF_COUNT_SW_MAX ...), which
    are one past the running kernel's last value: at most the committed one."""
    live = _gen_module().enums(vmlinux_btf)
    compared = 0
    for name, values in generated.ENUMS.items():
        for key, value in values.items():
            if key in live.get(name, {}):
                if key.startswith("__") or key.endswith("_MAX"):
                    assert live[name][key] <= value, f"{name}.{key}"
                else:
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
