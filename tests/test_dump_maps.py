"""`run --dump-maps` and obj.maps[name].typed against bpftool 7.1 (issue 11 items 3
and 5): a hash with struct keys and values, an array, a per-CPU array, maps without
BTF types (bpftool's hex forms, per-CPU too) and the data sections' maps, filled by
tests/data/maps/dumpmaps.bpf.c, give the text `bpftool map dump id ID` prints for the
same maps in the same run, byte for byte; the typed view gives the values of `bpftool
-j map dump`'s "formatted"."""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, _built, require_kernel, require_tool
from tests.netns import Running, bpf_ids

MAPS_DATA = ROOT / "tests" / "data" / "maps"
HEADER = re.compile(r"^bpfreplay: map (\S+) \(id (\d+)\) (at exit|after [\d.]+ s):$", re.M)
MAP_NAMES = ["flows", "counters", "per_cpu", "raw_small", "raw_wide", "raw_per_cpu",
             "dumpmaps.data", "dumpmaps.rodata", "dumpmaps.bss"]


@pytest.fixture(scope="module")
def dumpmaps() -> Path:
    require_kernel()
    require_tool("bpftool")
    return _built(MAPS_DATA / "build" / "dumpmaps.bpf.o", MAPS_DATA)


def _bpftool(*argv: str) -> str:
    done = subprocess.run(["bpftool", *argv], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _fill() -> None:
    """A write(2) of this process: the program fills its maps (once)."""
    fd = os.open(os.devnull, os.O_WRONLY)
    try:
        os.write(fd, b"x")
    finally:
        os.close(fd)


def _check_filled(texts: dict[str, str]) -> None:
    """What the program wrote is there (the comparisons are not of empty maps)."""
    assert '"comm": "dumper"' in texts["flows"] and '"colour": 5' in texts["flows"]
    assert '"label": "eth0"' in texts["counters"] and '"cpu_tag": 1' in texts["counters"]
    assert re.search(r'"cpu_tag": 10\d,', texts["per_cpu"])
    assert texts["raw_small"] == ("key: 00 00 00 00  value: 88 77 66 55 44 33 22 11\n"
                                  "Found 1 element\n")
    assert "value (CPU 00):" in texts["raw_per_cpu"] and texts["raw_wide"].startswith("key:\n")
    assert "-2000000" in texts["dumpmaps.data"] and '"done": true' in texts["dumpmaps.bss"]


def test_dump_text_is_bpftools(dumpmaps):
    """In-process: our text of each map, then bpftool's of the same map id; again after
    the bytes API changed them (a key deleted, per-CPU slots written one by one)."""
    import bpfreplay.api
    from bpfreplay.map_contents import BtfCache, dump_text

    with bpfreplay.api.load(str(dumpmaps), globals={"target_pid": "self"}) as obj:
        assert list(obj.maps) == MAP_NAMES
        _fill()
        cache = BtfCache()
        for round_ in range(2):
            texts = {}
            for name in MAP_NAMES:
                info, ours = dump_text(obj.maps[name].fd, cache)
                assert ours == _bpftool("map", "dump", "id", str(info.id)), (round_, name)
                texts[name] = ours
            if round_ == 1:
                break
            _check_filled(texts)
            per_cpu = obj.maps["per_cpu"]
            slots = per_cpu.value_size // 24
            per_cpu[0] = b"".join((cpu + 1).to_bytes(8, "little") * 3 for cpu in range(slots))
            del obj.maps["flows"][bytes.fromhex("0700000005000000")]
            obj.maps["raw_per_cpu"][9] = bytes(range(obj.maps["raw_per_cpu"].value_size))
        assert texts["flows"].count('"key"') == 1
        assert texts["per_cpu"].count('"packets": 1,') == 1  # CPU 0's slot


def test_typed_values_are_bpftool_jsons(dumpmaps):
    """obj.maps[name].typed: the keys and values of `bpftool -j map dump` "formatted";
    a map without BTF types says so."""
    import bpfreplay.api
    from bpfreplay.errors import LoaderError

    with bpfreplay.api.load(str(dumpmaps), globals={"target_pid": "self"}) as obj:
        _fill()
        for name in ["flows", "counters", "per_cpu", "dumpmaps.data", "dumpmaps.rodata",
                     "dumpmaps.bss"]:
            m = obj.maps[name]
            map_id = _map_id(m.fd)
            theirs = [entry["formatted"] for entry in
                      json.loads(_bpftool("-j", "map", "dump", "id", str(map_id)))]
            ours = []
            for key, value in m.typed.items():
                entry = {} if isinstance(key, bytes) else {"key": key}
                if m.per_cpu:
                    entry["values"] = [{"cpu": cpu, "value": v} for cpu, v in enumerate(value)]
                else:
                    entry["value"] = value
                ours.append(entry)
            assert ours == theirs, name
        flows = obj.maps["flows"].typed
        value = flows[bytes.fromhex("2a00000007000000")]
        assert value["comm"] == "dumper" and value["colour"] == "NEGATIVE"
        assert value["low"] == "0x5" and value["inner"]["flag"] is True
        assert flows.lookup(bytes(8)) is None
        with pytest.raises(LoaderError, match="'raw_small' has no BTF value type"):
            list(obj.maps["raw_small"].typed.items())


def _map_id(fd: int) -> int:
    with open(f"/proc/self/fdinfo/{fd}") as f:
        return int(re.search(r"^map_id:\s+(\d+)$", f.read(), re.M).group(1))


def test_run_dump_maps_at_exit_and_every_interval(dumpmaps):
    """`bpfreplay run --dump-maps --interval`: once a periodic round is printed, bpftool
    dumps each map the run holds; at Ctrl-C the run prints its maps again; every round
    of ours is bpftool's text, map for map."""
    run = Running([str(dumpmaps), "--set", "target_pid=self", "--dump-maps",
                   "--interval", "0.5"])
    try:
        assert run.proc.stdout is not None
        periodic = []
        for line in run.proc.stdout:  # up to the end of the first round
            periodic.append(line)
            if line.startswith("bpfreplay: map dumpmaps.bss (id") and "after" in line:
                break
        for line in run.proc.stdout:
            periodic.append(line)
            if line == "]\n":
                break
        names = {}
        for map_id in bpf_ids(run.pid)["map"]:
            info = json.loads(_bpftool("-j", "map", "show", "id", str(map_id)))
            names[info["name"]] = map_id
        theirs = {map_id: _bpftool("map", "dump", "id", str(map_id))
                  for map_id in names.values()}
    finally:
        status, out, err = run.stop()
    assert status == 0, err[-3000:]
    rounds = _sections("".join(periodic) + out)
    assert list(rounds)[-1] == "at exit" and len(rounds) >= 2, list(rounds)
    for when, dumps in rounds.items():
        assert [name for name, _, _ in dumps] == MAP_NAMES, when
        for name, map_id, text in dumps:
            assert text == theirs[map_id], (when, name)
            # bpftool shows the kernel's name: the data maps' names are cut to 15 chars
            assert names[name[:15]] == map_id
    _check_filled({name: text for name, _, text in rounds["at exit"]})


def _sections(stdout: str) -> dict[str, list[tuple[str, int, str]]]:
    """Each round of dumps (by its "at exit" / "after N s"): (name, id, text) per map."""
    rounds: dict[str, list[tuple[str, int, str]]] = {}
    headers = list(HEADER.finditer(stdout))
    for header, following in zip(headers, [*headers[1:], None], strict=True):
        end = following.start() if following else len(stdout)
        rounds.setdefault(header.group(3), []).append(
            (header.group(1), int(header.group(2)), stdout[header.end() + 1:end]))
    return rounds


def test_interval_needs_dump_maps(dumpmaps):
    done = subprocess.run([sys.executable, "-m", "bpfreplay.cli", "run", str(dumpmaps),
                           "--interval", "1"], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "--interval 1: needs --dump-maps" in done.stderr
    assert "Traceback" not in done.stderr


CORNERS = struct.Struct("<QQ16s6s12s4s3sbH4x")  # dumpedge.bpf.c's struct corners


def _corners(pointer: int, wide: int, quoted: bytes, tiny: int) -> bytes:
    return CORNERS.pack(0, pointer, wide.to_bytes(16, "little"), b"ab\0cd\0", quoted,
                        b"full", b"\x01\x00\x07", tiny, 65535)


def test_dumpers_corners_are_bpftools(dumpmaps):
    """What bpftool does at the edges of its BTF dumper, seen by writing the values
    from user space: a float ends the entry ("(unsupported-kind"), a NULL and a
    non-NULL pointer, a 128-bit int in hex, a char array through a typedef (numbers), a
    quote and a backslash in a string (bpftool's escapes), a char array with no NUL, a
    per-CPU hash with a struct key, an LRU hash with a char-array key, an empty hash."""
    import bpfreplay.api
    from bpfreplay.map_contents import BtfCache, dump_text

    edge = _built(MAPS_DATA / "build" / "dumpedge.bpf.o", MAPS_DATA)
    with bpfreplay.api.load(str(edge), attach=False) as obj:
        maps = obj.maps
        maps["corners"][1] = _corners(0, 5, b"it's a \\ b\0", -128)
        maps["corners"][2] = _corners(0xFFFF888812345678, 1 << 100, b"no nul here!", 3)
        maps["floats"][1] = struct.pack("<IfI", 7, 0.5, 9)
        per_cpu = maps["per_cpu_hash"]
        slots = per_cpu.value_size // 8
        per_cpu[_corners(1, 2, b"key\0", 0)] = b"".join(
            (-cpu - 1).to_bytes(4, "little", signed=True) + bytes(4) for cpu in range(slots))
        maps["lru"][b"abcd\0"] = b"\xff"
        maps["lru"][b"\x01bcde"] = b"A"
        cache = BtfCache()
        for name in ["corners", "floats", "per_cpu_hash", "lru", "empty"]:
            info, ours = dump_text(maps[name].fd, cache)
            assert ours == _bpftool("map", "dump", "id", str(info.id)), name
        assert "(unsupported-kind" in dump_text(maps["floats"].fd, cache)[1]
        assert dump_text(maps["empty"].fd, cache)[1] == "[]\n"
        text = dump_text(maps["corners"].fd, cache)[1]
        assert '"it\'s a \\n b"' in text and '"nothing": (nil)' in text
        assert '"wide": 0x10000000000000000000000000' in text


def test_object_stages_as_a_skeleton(dumpmaps):
    """Object.open() makes nothing in the kernel; set_global() then load() make the maps
    and the program (.rodata holding the value set, as bpftool reads it); attach() the
    link; close() leaves this process no fd of any of them (the kernel frees them
    later, in its own time)."""
    from bpfreplay.api import Object

    obj = Object.open(str(dumpmaps))
    try:
        assert all(m.fd < 0 for m in obj.loaded.maps) and not obj.links
        obj.set_global("target_pid=4242")
        obj.load()
        assert not obj.links
        rodata = obj.maps["dumpmaps.rodata"]
        info = json.loads(_bpftool("-j", "map", "dump", "id", str(_map_id(rodata.fd))))
        variables = info[0]["formatted"]["value"][".rodata"]
        assert {"target_pid": 4242} in variables
        assert obj.attach() == obj.notes and [link.program for link in obj.links] == ["fill"]
        ids = [_map_id(m.fd) for m in obj.loaded.maps]
    finally:
        obj.close()
    assert not set(ids) & bpf_ids(os.getpid())["map"]


def test_dump_maps_with_compare_stays_at_parity(dumpmaps, minimal_binary, minimal_object):
    """`run --compare --dump-maps`: the dump's calls (map info, the BTF by id, the
    get_next_key walk and lookups) come after the attach, in the application section as
    ours only: never a loader difference."""
    done = subprocess.run([sys.executable, "-m", "bpfreplay.cli", "run", str(minimal_object),
                           "--compare", "--duration", "1", "--dump-maps"],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "FULL PARITY" in done.stdout
    assert re.search(r"^    \[ours #\d+\] bpf BPF_MAP_GET_NEXT_KEY map:minimal_\.bss "
                     r"\(ours only\)$", done.stdout, re.M)
    assert re.search(r"^bpfreplay: map minimal_\.bss \(id \d+\) at exit:\n\[\{\n        "
                     r"\"value\": \{\n            \"\.bss\": \[\{\n                    "
                     r"\"my_pid\": \d+\n", done.stdout, re.M)
