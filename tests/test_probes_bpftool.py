"""Probe labels on `bpftool feature probe` (issue 9): thousands of calls through libbpf's
public probe API, bpftool's own probes, and one kernel_supports() probe of libbpf.

What is expected comes from bpftool itself (its JSON output of the same run: which
program and map types it found, which helpers each type has), from bpftool 7.1's
feature.c (probe_helpers_for_progtype skips no type but libbpf_probe_bpf_helper
refuses TRACING, EXT, LSM and STRUCT_OPS before any call), and from a recording of
libbpf 1.1.2's own probes (the reference minimal): any call we label as a
kernel_supports() probe must equal, byte for byte, the call libbpf 1.1.2 made for it.
One recording, shared by the tests (it makes ~5,400 bpf() calls, under a second).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from bpfreplay.decode.probes import PROBE_RULES, CallLabel, label_calls
from bpfreplay.trace import read_trace
from bpfreplay.uapi import attr_layout, cmd_name, cmd_value, enum_values
from tests.conftest import require_kernel, require_tool

BPFREPLAY = [sys.executable, "-m", "bpfreplay.cli"]
TRACE = "trace.mp"
KERNEL_SUPPORTS = {rule.probe for rule in PROBE_RULES if rule.source == "libbpf"}
# libbpf 1.1.2 libbpf_probes.c, libbpf_probe_bpf_helper(): -EOPNOTSUPP, no bpf() call
NO_HELPER_PROBE = {"tracing", "ext", "lsm", "struct_ops"}
HELPER = re.compile(r"libbpf_probe_bpf_helper\(BPF_PROG_TYPE_(\w+), (\w+)\)")
PROG_TYPE = re.compile(r"libbpf_probe_bpf_prog_type\(BPF_PROG_TYPE_(\w+)\)")
MAP_TYPE = re.compile(r"libbpf_probe_bpf_map_type\(BPF_MAP_TYPE_(\w+)\)")
# Pointers differ between processes: compared by what they point at, apart.
POINTERS = {"BPF_PROG_LOAD": ("insns", "license", "log_buf", "func_info", "line_info",
                              "fd_array"),
            "BPF_BTF_LOAD": ("btf", "btf_log_buf"), "BPF_MAP_CREATE": ()}


def _record(tmp: Path, *program: str) -> tuple[list[dict], str]:
    out = tmp / TRACE
    result = subprocess.run([*BPFREPLAY, "record", "-q", "-o", str(out), "--", *program],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ})
    assert result.returncode == 0, result.stderr[-3000:]
    with read_trace(str(out)) as trace:
        return list(trace.calls()), result.stdout


@pytest.fixture(scope="module")
def feature_probe(tmp_path_factory: pytest.TempPathFactory) -> tuple[
        list[dict], dict[int, CallLabel], dict, Path]:
    require_kernel()
    require_tool("bpftool")
    where = tmp_path_factory.mktemp("feature")
    calls, stdout = _record(where, "bpftool", "-j", "feature", "probe")
    labels = {label.index: label for label in label_calls(calls)}
    return calls, labels, json.loads(stdout), where / TRACE


def _bpf(calls: list[dict]) -> list[dict]:
    return [c for c in calls if c["syscall"] == "bpf"]


def _available(found: dict, section: str, suffix: str) -> dict[str, bool]:
    return {key.removeprefix("have_").removesuffix(suffix): value
            for key, value in found[section].items()}


def _field(call: dict, name: str) -> int:
    f = attr_layout(call["cmd"]).field(name)
    return int.from_bytes(call["attr"][f.offset:f.end], "little")


def test_helper_probes_named_with_their_arguments(feature_probe) -> None:
    calls, labels, found, _ = feature_probe
    types = _available(found, "program_types", "_prog_type")
    probed = {t for t, ok in types.items() if ok and t not in NO_HELPER_PROBE}
    per_helper: dict[str, list[str]] = defaultdict(list)
    supported: dict[str, set[str]] = defaultdict(set)
    refused_late: dict[str, set[str]] = defaultdict(set)
    for call in _bpf(calls):
        label = labels[call["index"]]
        m = HELPER.fullmatch(label.probe or "")
        if not m:
            continue
        kind, helper = m.group(1).lower(), m.group(2)
        per_helper[helper].append(kind)
        # libbpf_probe_bpf_helper asks for a 4096-byte verifier log at level 1
        assert cmd_name(call["cmd"]) == "BPF_PROG_LOAD"
        assert (_field(call, "log_level"), _field(call, "log_size")) == (1, 4096)
        assert _field(call, "log_buf") != 0
        if label.note.endswith(": supported)"):
            supported[kind].add(helper)
        elif b"program of this type cannot use helper " in call["out"]["log_buf"]:
            # libbpf 1.1 (bpftool 7.1's) does not know this newer refusal and says
            # yes; libbpf 1.7 reads it as no, and so do we.
            refused_late[kind].add(helper)
    for helper in ("bpf_ktime_get_coarse_ns", "bpf_get_attach_cookie"):
        assert sorted(per_helper[helper]) == sorted(probed), helper
    assert len(per_helper["bpf_ktime_get_coarse_ns"]) == len(probed) >= 20
    # Our verdict (from the verifier's log, as libbpf reads it) is bpftool's.
    for kind in probed:
        listed = set(found["helpers"][f"{kind}_available_helpers"])
        assert supported[kind] | refused_late[kind] == listed, kind
        assert not supported[kind] & refused_late[kind]


def test_prog_and_map_type_probes_match_bpftool(feature_probe) -> None:
    calls, labels, found, _ = feature_probe
    prog_types = _available(found, "program_types", "_prog_type")
    map_types = _available(found, "map_types", "_map_type")
    ours_prog: dict[str, bool] = {}
    ours_map: dict[str, bool] = {}
    for call in _bpf(calls):
        label = labels[call["index"]]
        for pattern, ours in ((PROG_TYPE, ours_prog), (MAP_TYPE, ours_map)):
            m = pattern.fullmatch(label.probe or "")
            if m and cmd_name(call["cmd"]) in ("BPF_PROG_LOAD", "BPF_MAP_CREATE"):
                kind = m.group(1).lower()
                field, enum = (("prog_type", "bpf_prog_type") if pattern is PROG_TYPE
                               else ("map_type", "bpf_map_type"))
                if _field(call, field) != enum_values(enum)[
                        f"BPF_{field.upper()}_{m.group(1)}"]:
                    # a part of the probe: the inner map of a map-in-map type's
                    assert pattern is MAP_TYPE and kind.endswith("_of_maps"), label
                    continue
                assert kind not in ours, f"{kind} probed twice"
                ours[kind] = call["ret"] >= 0
    assert set(ours_prog) == set(prog_types)
    assert set(ours_map) == set(map_types)
    # Where a load or create succeeded bpftool says "available" (libbpf's probes for
    # types expected to fail, such as STRUCT_OPS, count a given errno as yes).
    for kind, made in ours_prog.items():
        assert not made or prog_types[kind], kind
    for kind, made in ours_map.items():
        assert not made or map_types[kind], kind


def test_no_kernel_supports_label_but_libbpf_1_1_2s_own(feature_probe, tmp_path: Path,
                                                        minimal_binary: Path) -> None:
    """Every call labelled as a kernel_supports() probe equals the call libbpf 1.1.2
    made for that probe in a recording of the reference minimal: size, every attr byte
    but pointers, instructions, BTF, license."""
    calls, labels, _, _ = feature_probe
    reference, _ = _record(tmp_path, str(minimal_binary), "0.2")
    reference_labels = {label.index: label for label in label_calls(reference)}
    seen: dict[str, set[tuple]] = defaultdict(set)
    for call in _bpf(reference):
        probe = reference_labels[call["index"]].probe
        if probe in KERNEL_SUPPORTS:
            seen[probe].add(_content(call))
    assert len(seen) >= 15  # libbpf 1.1.2 probes 19 features loading minimal on 6.18
    labelled = [c for c in _bpf(calls) if labels[c["index"]].probe in KERNEL_SUPPORTS]
    assert labelled  # bpf_prog_load's bump_rlimit_memlock: the memcg_account probe
    for call in labelled:
        probe = labels[call["index"]].probe
        assert _content(call) in seen[probe], (probe, call["index"])
    # The rest is the public API's or bpftool's; nothing of bpftool's is libbpf's.
    for call in _bpf(calls):
        probe = labels[call["index"]].probe
        assert probe is not None, call["index"]
        assert probe in KERNEL_SUPPORTS or probe.startswith(("libbpf_probe_", "bpftool:"))


def _content(call: dict) -> tuple:
    name = cmd_name(call["cmd"])
    attr = bytearray(call["attr"][:call["size"]])
    layout = attr_layout(cmd_value(name))
    for field in POINTERS.get(name, ()):
        f = layout.field(field)
        if f.offset < len(attr):
            attr[f.offset:f.end] = bytes(f.size)
    inputs = call.get("in", {})
    return (name, call["size"], bytes(attr),
            *(bytes(inputs.get(k, b"")) for k in ("insns", "license", "btf")))


def test_summary_lines_stay_short(feature_probe) -> None:
    """5,430 probe calls, 5,012 of them failing: every summary line stays readable."""
    *_, trace = feature_probe
    result = subprocess.run([*BPFREPLAY, "explain", str(trace)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = [line for line in result.stdout.splitlines() if line.startswith("#")]
    assert any("feature probes" in line for line in summary)
    assert max(len(line) for line in summary) <= 200, max(summary, key=len)
