"""bpfreplay.uapi.defines against the real headers, and the merge of newer.py.

A C program printing every constant of defines.py that the installed uapi headers have
(Debian 12's are Linux 6.1) is compiled with cc; the values must be equal. Constants
newer than those headers are compared with the upstream text below. The merge test
checks that the newer-uapi supplement only adds to what the kernel's BTF says.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from bpfreplay.uapi import _generated as generated
from bpfreplay.uapi import (
    attr_layout,
    cmd_name,
    cmd_value,
    defines,
    enum_name,
    enum_values,
    newer,
    struct_layout,
)
from tests.conftest import require_tool

HEADERS = ("linux/bpf.h", "linux/perf_event.h", "linux/if_link.h", "linux/netfilter.h",
           "linux/hw_breakpoint.h", "linux/time.h", "linux/fcntl.h")

# Constants the 6.1 headers do not have yet, as the newest upstream uapi writes them:
# include/uapi/linux/bpf.h and perf_event.h of bpf-next as synced into libbpf
# ("sync: latest libbpf changes from kernel", libbpf commit 2bbc4834e960, July 2026).
# Spelled as the headers spell them (shifts), not copied from defines.py.
UPSTREAM = {
    "BPF_F_BEFORE": 1 << 3, "BPF_F_AFTER": 1 << 4, "BPF_F_ID": 1 << 5,
    "BPF_F_PREORDER": 1 << 6, "BPF_F_LINK": 1 << 13,
    "BPF_F_XDP_DEV_BOUND_ONLY": 1 << 6, "BPF_F_TEST_REG_INVARIANTS": 1 << 7,
    "BPF_F_PATH_FD": 1 << 14, "BPF_F_TOKEN_FD": 1 << 16,
    "BPF_F_UPROBE_MULTI_RETURN": 1 << 0, "BPF_F_UPROBE_MULTI_PATH_FD": 1 << 1,
    "BPF_F_NETFILTER_IP_DEFRAG": 1 << 0,
    "BPF_F_CPU": 8, "BPF_F_ALL_CPUS": 16,
    "BPF_STREAM_STDOUT": 1, "BPF_STREAM_STDERR": 2,
    "BPF_COMMON_ATTRS": 1 << 16,
    "PERF_ATTR_SIZE_VER8": 136, "PERF_ATTR_SIZE_VER9": 144,
    "PERF_SAMPLE_BRANCH_COUNTERS": 1 << 19,
}
# Not in any uapi header: kernel/events/core.c's PERF_PROBE_CONFIG_IS_RETPROBE; its
# value is what /sys/bus/event_source/devices/*probe/format/retprobe says (checked below).
NOT_UAPI = {"PERF_PROBE_CONFIG_IS_RETPROBE"}


def our_constants() -> dict[str, int]:
    return {name: value for name, value in vars(defines).items()
            if re.fullmatch(r"[A-Z][A-Z0-9_]+", name) and isinstance(value, int)}


def _c_program(names: list[str]) -> str:
    lines = ["#include <stdio.h>"] + [f"#include <{h}>" for h in HEADERS]
    lines.append("int main(void)\n{")
    lines += [f'\tprintf("{n} %lld\\n", (long long)({n}));' for n in names]
    lines.append("\treturn 0;\n}")
    return "\n".join(lines) + "\n"


def header_values(tmp_path: Path, names: list[str]) -> dict[str, int]:
    """Compile and run a program printing ``names``; names the headers lack are dropped
    (the compiler says which) and the program is compiled again."""
    cc = require_tool("cc")
    source, binary = tmp_path / "defines.c", tmp_path / "defines"
    names = list(names)
    for _ in range(3):
        source.write_text(_c_program(names))
        result = subprocess.run([cc, "-o", str(binary), str(source)], capture_output=True,
                                text=True, env={**os.environ, "LC_ALL": "C"})
        if result.returncode == 0:
            break
        missing = set(re.findall(r"['\u2018](\w+)['\u2019] undeclared", result.stderr))
        assert missing, result.stderr[-3000:]
        names = [n for n in names if n not in missing]
    else:
        pytest.fail("the constants program did not compile")
    out = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout
    return {name: int(value) for name, value in (line.split() for line in out.splitlines())}


def test_defines_equal_the_installed_headers(tmp_path):
    ours = our_constants()
    theirs = header_values(tmp_path, sorted(ours))
    assert len(theirs) > 100, "the headers should have most of our constants"
    for name, value in theirs.items():
        assert ours[name] == value, f"{name}: ours {ours[name]:#x}, header {value:#x}"
    # What the installed headers lack must be newer upstream constants we checked.
    for name in sorted(set(ours) - set(theirs) - NOT_UAPI):
        assert name in UPSTREAM, f"{name} is in neither the headers nor UPSTREAM"
        assert ours[name] == UPSTREAM[name], name


def test_every_bpf_and_perf_define_is_known():
    """The flag #defines of the installed headers are all in defines.py (a constant the
    headers add must not go unnoticed)."""
    ours = our_constants()
    wanted = []
    for header, pattern in (("bpf.h", r"BPF_F_\w+|BPF_PSEUDO_\w+"),
                            ("perf_event.h", r"PERF_EVENT_IOC_\w+|PERF_FLAG_\w+|"
                                             r"PERF_ATTR_SIZE_VER\d+")):
        text = Path("/usr/include/linux", header).read_text()
        wanted += re.findall(rf"^#define\s+({pattern})\s", text, re.M)
    helper_side = {"BPF_F_REDIRECT_FLAGS"}  # bpf_redirect() helper flags, not bpf_attr
    missing = [n for n in wanted if n not in ours and n not in helper_side]
    assert not missing


def test_perf_ioctl_numbers_are_the_ones_strace_names():
    """Independent of the headers: the numbers in a real trace of the minimal example
    are 0x2400 (ENABLE) and 0x2401 (DISABLE), and libbpf's SET_BPF is 0x40042408."""
    assert defines.PERF_EVENT_IOC_ENABLE == 0x2400
    assert defines.PERF_EVENT_IOC_DISABLE == 0x2401
    assert defines.PERF_EVENT_IOC_SET_BPF == 0x40042408


@pytest.mark.parametrize("pmu", ["uprobe", "kprobe"])
def test_probe_retprobe_bit_matches_sysfs(pmu):
    fmt = Path(f"/sys/bus/event_source/devices/{pmu}/format/retprobe")
    if not fmt.exists():
        pytest.skip(f"no {pmu} PMU on this kernel")
    assert fmt.read_text().strip() == "config:0"
    assert defines.PERF_PROBE_CONFIG_IS_RETPROBE == 1 << 0


def test_flag_sets_hold_single_bits():
    for set_name, names in defines.FLAG_SETS.items():
        for name, value in names.items():
            assert value and value & (value - 1) == 0, f"{set_name}.{name}"


def test_newer_supplement_only_adds():
    """The BTF wins: every name and value the generated table has is unchanged, and
    every field of every BTF layout is still there at the same place."""
    for enum, values in generated.ENUMS.items():
        merged = enum_values(enum)
        for name, value in values.items():
            assert merged[name] == value
    for name in generated.COMMAND_GROUPS:
        if name not in generated.ENUMS["bpf_cmd"]:
            continue
        merged = attr_layout(cmd_value(name))
        base = generated.ATTR_LAYOUTS.get(generated.COMMAND_GROUPS[name])
        if base is not None:
            assert merged.fields[:len(base.fields)] == base.fields
            assert merged.size >= base.size
    for name, base in generated.STRUCT_LAYOUTS.items():
        assert struct_layout(name).fields[:len(base.fields)] == base.fields


def test_newer_commands_and_names_decode():
    # Every command through BPF_PROG_ASSOC_STRUCT_OPS has a name and a layout.
    assert cmd_value("BPF_PROG_ASSOC_STRUCT_OPS") == 38
    for cmd in range(39):
        assert cmd_name(cmd) is not None, cmd
        assert attr_layout(cmd) is not None, cmd_name(cmd)
    assert cmd_name(39) is None  # __MAX_BPF_CMD is a count, not a name
    assert enum_name("bpf_map_type", 35) == "BPF_MAP_TYPE_RHASH"
    link = attr_layout(cmd_value("BPF_LINK_CREATE"))
    assert link.field("uprobe_multi.path_fd").offset == 60
    common = struct_layout("bpf_common_attr")
    assert common.size == 24 and common.known_end() == 20
    perf = struct_layout("perf_event_attr")
    assert perf.field("config4").offset == 136 and perf.size == 144
    # Entries the BTF already has are not taken from the supplement.
    for enum, values in newer.ENUMS.items():
        for name in values:
            if name in generated.ENUMS.get(enum, {}):
                assert enum_values(enum)[name] == generated.ENUMS[enum][name]
