"""USDT programs (``SEC("usdt/PATH:PROVIDER:NAME")``) attached by our loader as libbpf
1.1.2's USDT manager attaches them: the same calls as libbpf's own skeleton, the same
spec-map values, probes that fire with the right arguments in a real process, and, on a
kernel without BPF cookies (faked), the ip-to-spec map libbpf keeps then.

The target (tests/data/usdt/usdt_target.c) and the object (usdt.bpf.c) are ours; the
object names its target ./usdt_target, so everything runs from the directory that
holds it."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from bpfreplay.trace import read_trace
from bpfreplay.uapi import attr_layout, cmd_value
from tests.conftest import ROOT, _built, require_kernel

BPFREPLAY = [sys.executable, "-m", "bpfreplay.cli"]
USDT_DATA = ROOT / "tests" / "data" / "usdt"
BPF_MAP_CREATE = cmd_value("BPF_MAP_CREATE")
BPF_MAP_UPDATE_ELEM = cmd_value("BPF_MAP_UPDATE_ELEM")
BPF_MAP_DELETE_ELEM = cmd_value("BPF_MAP_DELETE_ELEM")
BPF_LINK_CREATE = cmd_value("BPF_LINK_CREATE")
BPF_PROG_LOAD = cmd_value("BPF_PROG_LOAD")
PROBES = ("constant", "in_register", "in_memory", "sites", "guarded")
# the slots of usdt.bpf.c's `seen` map
(CONSTANT_HITS, CONSTANT_ARG, REGISTER_HITS, REGISTER_ARG, MEMORY_HITS, MEMORY_ARG,
 SITES_HITS, SITES_SECOND_SUM, GUARDED_HITS, GUARDED_ARG, ARG_COUNTS, BY_HAND_HITS,
 BY_HAND_ARG, BY_HAND_COOKIE) = range(14)


@pytest.fixture(scope="module")
def usdt_build() -> Path:
    require_kernel()
    for name in ("usdt_target", "nopie/usdt_target", "usdt.bpf.o", "usdt_skel"):
        _built(USDT_DATA / "build" / name, USDT_DATA)
    return USDT_DATA / "build"


def _calls(path: Path) -> list[dict]:
    with read_trace(str(path)) as t:
        return list(t.calls())


def _map_updates(calls: list[dict], map_name: str, command: int = BPF_MAP_UPDATE_ELEM) \
        -> list[tuple[bytes, bytes | None, int]]:
    """(key, value, flags) of each update (or delete) of the map whose kernel name starts
    with ``map_name``, the map found by the fd its MAP_CREATE returned."""
    name_field = attr_layout(BPF_MAP_CREATE).field("map_name")
    names: dict[int, str] = {}
    found = []
    for c in calls:
        if c["syscall"] != "bpf":
            continue
        if c["args"][0] == BPF_MAP_CREATE and c["ret"] is not None and c["ret"] >= 0:
            raw = c["attr"][name_field.offset:name_field.end]
            names[c["ret"]] = raw.split(b"\0", 1)[0].decode()
        elif c["args"][0] == command:
            fd, = struct.unpack_from("<I", c["attr"], 0)
            name = names.get(fd)
            if name and map_name.startswith(name):
                flags, = struct.unpack_from("<Q", c["attr"], 24)
                found.append((c["in"]["key"], c["in"].get("value"), flags))
    return found


def _readelf_notes(binary: Path) -> list[tuple[str, int, int, str]]:
    """(name, location, semaphore, arguments) of each stapsdt note, from readelf -n."""
    text = subprocess.run(["readelf", "-n", str(binary)], capture_output=True, text=True,
                          check=True).stdout
    return [(name, int(loc, 16), int(sema, 16), args) for name, loc, sema, args in
            re.findall(r"Name: (\S+)\n\s+Location: (0x[0-9a-f]+), Base: 0x[0-9a-f]+, "
                       r"Semaphore: (0x[0-9a-f]+)\n\s+Arguments: ([^\n]*)", text)]


def test_run_compare_is_at_full_parity_with_libbpf(usdt_build, tmp_path):
    """`bpfreplay run usdt.bpf.o --compare` against libbpf's skeleton: every call of load,
    USDT attach (spec map updates, uprobes with semaphore offset and BPF cookie, perf
    links) and teardown identical; the spec values byte for byte libbpf's."""
    reference = tmp_path / "libbpf.mp"
    subprocess.run([*BPFREPLAY, "record", "-q", "-o", str(reference), "--", "./usdt_skel",
                    "0.1"], cwd=usdt_build, check=True, capture_output=True, timeout=120)
    ours = tmp_path / "ours.mp"
    result = subprocess.run([*BPFREPLAY, "run", "usdt.bpf.o", "--duration", "0.3",
                             "--compare", str(reference), "--save-trace", str(ours)],
                            cwd=usdt_build, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FULL PARITY" in result.stdout + result.stderr
    assert re.search(r"prog 'attached_by_hand' \(usdt\): .*not attached", result.stderr)

    libbpf_calls, our_calls = _calls(reference), _calls(ours)
    libbpf_specs = _map_updates(libbpf_calls, "__bpf_usdt_specs")
    assert _map_updates(our_calls, "__bpf_usdt_specs") == libbpf_specs
    # one spec per distinct argument string of each probe (readelf's view of the notes)
    notes = _readelf_notes(usdt_build / "usdt_target")
    distinct = sum(len({args for name, _, _, args in notes if name == probe})
                   for probe in PROBES)
    assert [struct.unpack("<i", key)[0] for key, _, _ in libbpf_specs] == list(range(distinct))
    assert all(len(value) == 208 and flags == 0 for _, value, flags in libbpf_specs)
    # with BPF cookies libbpf keeps no ip-to-spec map: neither do we
    assert _map_updates(our_calls, "__bpf_usdt_ip_to_spec_id") == []
    # the uprobe of the semaphore's probe carries the semaphore's file offset
    opens = [c for c in our_calls if c["syscall"] == "perf_event_open"]
    assert len(opens) == len([n for n in notes if n[0] in PROBES])
    configs = [struct.unpack_from("<Q", c["attr"], 8)[0] for c in opens]
    assert [config >> 32 != 0 for config in configs] == [n[2] != 0 for n in notes]


def _fd_id(fd: int, key: str) -> int:
    with open(f"/proc/self/fdinfo/{fd}") as f:
        return int(re.search(rf"^{key}:\s*(\d+)", f.read(), re.M).group(1))


def _seen(map_fd: int) -> list[int]:
    """The `seen` array read back by bpftool (the map id of our fd)."""
    out = subprocess.run(["bpftool", "-j", "map", "dump", "id", str(_fd_id(map_fd, "map_id"))],
                         capture_output=True, text=True, check=True).stdout
    values = {}
    for entry in json.loads(out):
        key = entry.get("key", entry.get("formatted", {}).get("key"))
        value = entry["formatted"]["value"] if "formatted" in entry else entry["value"]
        if isinstance(key, list):
            key = int.from_bytes(bytes(int(b, 16) for b in key), "little")
        if isinstance(value, list):
            value = int.from_bytes(bytes(int(b, 16) for b in value), "little", signed=True)
        values[int(key)] = int(value)
    return [values[i] for i in range(len(values))]


def _load_and_attach(object_path: Path, trace: Path):  # noqa: ANN202 - (obj, notes)
    from bpfreplay.loader.attach import attach_all
    from bpfreplay.loader.kernel import load, open_object
    from bpfreplay.loader.spec import load_spec, skeleton_name

    obj = open_object(load_spec(str(object_path), name=skeleton_name(str(object_path))))
    try:
        load(obj)
        notes = attach_all(obj)
    except BaseException:
        obj.close()
        raise
    return obj, notes


def _prog_ids_gone(ids: list[int]) -> bool:
    return all(subprocess.run(["bpftool", "prog", "show", "id", str(i)],
                              capture_output=True).returncode != 0 for i in ids)


def _run_target(directory: Path, rounds: int) -> str:
    return subprocess.run(["./usdt_target", str(rounds)], cwd=directory, capture_output=True,
                          text=True, check=True, timeout=30).stdout


def test_probes_fire_with_their_arguments(usdt_build, tmp_path, monkeypatch):
    """Attached by our loader, every probe fires in a real run of the target with the
    arguments libbpf's usdt.bpf.h reads through our specs (constant, register, memory
    off %rbp, three sites of one probe, negative constants), and the kernel raises the
    semaphore our uprobe names. Nothing stays loaded."""
    from bpfreplay import sys as bsys
    from bpfreplay.recording.self_trace import SelfTracer

    assert "semaphore 0" in _run_target(usdt_build, 1)  # nothing attached yet
    monkeypatch.chdir(usdt_build)
    with SelfTracer(str(tmp_path / "ours.mp")) as tracer, bsys.traced_by(tracer):
        obj, notes = _load_and_attach(usdt_build / "usdt.bpf.o", tmp_path)
        try:
            prog_ids = [_fd_id(p.fd, "prog_id") for p in obj.programs]
            assert [link.program for link in obj.links] == \
                ["on_constant", "on_register", "on_memory", "on_sites", "on_guarded"]
            assert any("attached_by_hand" in note for note in notes)
            out = _run_target(usdt_build, 3)
            seen = _seen(obj.map("seen").fd)
        finally:
            obj.close()
    assert "semaphore 1" in out
    assert seen[CONSTANT_HITS] == 3 and seen[CONSTANT_ARG] == 42
    assert seen[REGISTER_HITS] == 3 and seen[REGISTER_ARG] == (1000 + 3) * 3
    assert seen[MEMORY_HITS] == 3 and seen[MEMORY_ARG] == 1000 + 3
    assert seen[SITES_HITS] == 9 and seen[SITES_SECOND_SUM] == 3 * (7 + 7 - 9)
    assert seen[GUARDED_HITS] == 3 and seen[GUARDED_ARG] == -5
    assert seen[ARG_COUNTS] == 3 * 1 + 9 * 2  # bpf_usdt_arg_cnt() from our specs
    assert _prog_ids_gone(prog_ids)
    assert "semaphore 0" in _run_target(usdt_build, 1)  # the uprobes released it


def _without_bpf_cookies(number: int, args: tuple[int, ...]) -> tuple[int, int]:
    """The kernel, except that a kprobe program calling bpf_get_attach_cookie() (libbpf's
    FEAT_BPF_COOKIE probe) is refused, as before 5.15."""
    from bpfreplay import sys as bsys

    if number == 321 and args[0] == BPF_PROG_LOAD:
        attr = ctypes.string_at(args[1], 16)
        prog_type, insn_cnt, insns = struct.unpack_from("<IIQ", attr)
        if prog_type == 2 and insn_cnt == 2:
            code, _, _, imm = struct.unpack_from("<BBhi", ctypes.string_at(insns, 8))
            if code == 0x85 and imm == 174:  # call bpf_get_attach_cookie
                return -1, errno.EINVAL
    return bsys._libc_syscall(number, args)


def test_without_bpf_cookies_the_ip_to_spec_map_is_kept(usdt_build, tmp_path, monkeypatch):
    """usdt_manager_attach_usdt() without BPF cookies: a position-dependent target's
    sites are mapped abs_ip → spec id (BPF_NOEXIST) before each uprobe, the links carry
    no cookie, each uprobe's teardown is followed by the delete of its ip; the programs
    still read their arguments (through the ip map). A PIE target is refused then."""
    from bpfreplay import sys as bsys
    from bpfreplay.errors import LoaderError
    from bpfreplay.recording.self_trace import SelfTracer

    workdir = tmp_path / "nopie"
    workdir.mkdir()
    shutil.copy(usdt_build / "nopie" / "usdt_target", workdir / "usdt_target")
    monkeypatch.chdir(workdir)
    trace = tmp_path / "nocookie.mp"
    with SelfTracer(str(trace)) as tracer, bsys.traced_by(tracer), \
            bsys.override_syscall(_without_bpf_cookies):
        obj, _ = _load_and_attach(usdt_build / "usdt.bpf.o", tmp_path)
        try:
            assert obj.features.results["bpf_cookie"] is False
            out = _run_target(workdir, 2)
            seen = _seen(obj.map("seen").fd)
        finally:
            obj.close()
    assert "semaphore 1" in out
    assert seen[CONSTANT_HITS] == 2 and seen[CONSTANT_ARG] == 42
    assert seen[MEMORY_HITS] == 2 and seen[MEMORY_ARG] == 1000 + 2
    assert seen[SITES_HITS] == 6 and seen[GUARDED_ARG] == -5

    calls = _calls(trace)
    notes = [n for n in _readelf_notes(workdir / "usdt_target") if n[0] in PROBES]
    ip_updates = _map_updates(calls, "__bpf_usdt_ip_to_spec_id")
    assert [struct.unpack("<q", key)[0] for key, _, _ in ip_updates] == [n[1] for n in notes]
    assert all(flags == 1 for _, _, flags in ip_updates)  # BPF_NOEXIST
    spec_ids = [struct.unpack("<I", value)[0] for _, value, _ in ip_updates]
    assert spec_ids == [0, 1, 2, 3, 3, 4, 5]  # the two sites with one argument string
    links = [c for c in calls if c["syscall"] == "bpf" and c["args"][0] == BPF_LINK_CREATE
             and c["ret"] is not None and c["ret"] >= 0]
    assert all(struct.unpack_from("<Q", c["attr"], 16)[0] == 0 for c in links)
    deletes = _map_updates(calls, "__bpf_usdt_ip_to_spec_id", BPF_MAP_DELETE_ELEM)
    assert [struct.unpack("<q", key)[0] for key, _, _ in deletes] == [n[1] for n in notes]
    # each delete right after its uprobe's link is closed
    link_fds = {c["ret"] for c in links}
    teardown = calls[calls.index(links[-1]) + 1:]
    order = [("close" if c["syscall"] == "close" else "delete") for c in teardown
             if (c["syscall"] == "close" and c["args"][0] in link_fds)
             or (c["syscall"] == "bpf" and c["args"][0] == BPF_MAP_DELETE_ELEM)]
    assert order == ["close", "delete"] * len(notes)

    monkeypatch.chdir(usdt_build)  # the PIE build
    with bsys.override_syscall(_without_bpf_cookies):
        with pytest.raises(LoaderError, match="shared libraries without specific PID"):
            obj, _ = _load_and_attach(usdt_build / "usdt.bpf.o", tmp_path)
            obj.close()


def test_a_failing_uprobe_tears_down_the_sites_already_attached(usdt_build, tmp_path,
                                                                monkeypatch):
    """usdt_manager_attach_usdt()'s error path: when the uprobe of the second site of
    bpfreplay:sites cannot be opened (faked), the first site's uprobe is torn down at
    once, the attach fails naming the site, and closing the object then tears down the
    links of the programs before it; no fd of ours stays open."""
    from bpfreplay import sys as bsys
    from bpfreplay.errors import LoaderError
    from bpfreplay.recording.self_trace import SelfTracer

    sites = [loc for name, loc, _, _ in _readelf_notes(usdt_build / "usdt_target")
             if name == "sites"]
    # PIE: the file offset of a site in the first executable segment is its address
    # minus that segment's address plus its file offset, which readelf -l gives
    segments = subprocess.run(["readelf", "-lW", str(usdt_build / "usdt_target")],
                              capture_output=True, text=True, check=True).stdout
    load = next(line.split() for line in segments.splitlines()
                if line.split()[:1] == ["LOAD"] and "E" in line.split()[-2])
    offset_of = {loc: loc - int(load[2], 16) + int(load[1], 16) for loc in sites}
    refused = offset_of[sites[1]]

    def refuse_second_site(number: int, args: tuple[int, ...]) -> tuple[int, int]:
        if number == 298 and struct.unpack_from("<Q", ctypes.string_at(args[0], 72), 64)[0] \
                == refused:
            return -1, errno.EINVAL
        return bsys._libc_syscall(number, args)

    monkeypatch.chdir(usdt_build)
    fds_before = set(os.listdir("/proc/self/fd"))
    trace = tmp_path / "failing.mp"
    with SelfTracer(str(trace)) as tracer, bsys.traced_by(tracer), \
            bsys.override_syscall(refuse_second_site):
        with pytest.raises(LoaderError, match=r"failed to attach uprobe #1 for "
                           r"'bpfreplay:sites'"):
            _load_and_attach(usdt_build / "usdt.bpf.o", tmp_path)
    assert set(os.listdir("/proc/self/fd")) <= fds_before

    calls = _calls(trace)
    opens = [c for c in calls if c["syscall"] == "perf_event_open"]
    offsets = [struct.unpack_from("<Q", c["attr"], 64)[0] for c in opens]
    assert offsets[-2:] == [offset_of[sites[0]], refused]
    assert opens[-1]["errno"] == errno.EINVAL
    first_site_fd = opens[-2]["ret"]
    disables = [c["args"][0] for c in calls if c["syscall"] == "ioctl"
                and c["args"][1] & 0xFFFFFFFF == 0x2401]
    # the partial USDT link first, then the links of on_constant, on_register, on_memory
    assert disables == [first_site_fd] + [c["ret"] for c in opens[:3]]


SYSTEM_TARGETS = {"/lib/x86_64-linux-gnu/libstdc++.so.6": ("throw", "catch"),
                  "/usr/bin/python3.11": ("gc__start", "import__find__load__done")}


def test_system_binaries_at_full_parity_with_libbpf(usdt_build, tmp_path):
    """USDT probes of binaries nobody here wrote (Debian's libstdc++, found by name on
    the library paths, and python3.11, an ET_EXEC with semaphores and an argument off
    %rsp): our calls are libbpf's, call by call."""
    _built(usdt_build / "usdt_system_skel", USDT_DATA)
    for binary, names in SYSTEM_TARGETS.items():
        if not os.path.exists(binary):
            pytest.skip(f"no {binary}")
        found = {name for name, _, _, _ in _readelf_notes(Path(binary))}
        if not set(names) <= found:
            pytest.skip(f"{binary} lacks the USDT probes {sorted(set(names) - found)}")
    reference = tmp_path / "libbpf.mp"
    subprocess.run([*BPFREPLAY, "record", "-q", "-o", str(reference), "--",
                    "./usdt_system_skel", "0.1"], cwd=usdt_build, check=True,
                   capture_output=True, timeout=120)
    result = subprocess.run([*BPFREPLAY, "run", "usdt_system.bpf.o", "--duration", "0.3",
                             "--compare", str(reference)], cwd=usdt_build,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FULL PARITY" in result.stdout + result.stderr
    assert "/lib/x86_64-linux-gnu/libstdc++.so.6:libstdcxx:throw" in result.stderr
    libbpf_calls = _calls(reference)
    assert len(_map_updates(libbpf_calls, "__bpf_usdt_specs")) == 4
    semaphores = [struct.unpack_from("<Q", c["attr"], 8)[0] >> 32 for c in libbpf_calls
                  if c["syscall"] == "perf_event_open"]
    assert [s != 0 for s in semaphores] == [False, False, True, True]


def _attach_by_hand_and_fire(usdt_build: Path, directory: Path, cookie: int) -> list[int]:
    """Load usdt.bpf.o, attach its bare SEC("usdt") program by hand to bpfreplay:constant
    in one running target (pid, USDT cookie), fire it, and read `seen` back."""
    from bpfreplay.loader.kernel import load, open_object
    from bpfreplay.loader.spec import load_spec, skeleton_name
    from bpfreplay.loader.usdt import attach_usdt

    target = subprocess.Popen(["./usdt_target", "2", "wait"], cwd=directory, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert target.stdout.readline().startswith("usdt_target: waiting")
        path = str(usdt_build / "usdt.bpf.o")
        obj = open_object(load_spec(path, name=skeleton_name(path)))
        try:
            load(obj)
            obj.links.append(attach_usdt(obj, obj.program("attached_by_hand"),
                                         "./usdt_target", "bpfreplay", "constant",
                                         pid=target.pid, cookie=cookie))
            _run_target(directory, 1)  # another process: the pid filter keeps it out
            target.communicate("\n", timeout=30)
            return _seen(obj.map("seen").fd)
        finally:
            obj.close()
    finally:
        target.kill()
        target.wait()


def test_attach_by_hand_with_a_pid_and_a_usdt_cookie(usdt_build, tmp_path, monkeypatch):
    """bpf_program__attach_usdt() as an application calls it: one process (pid), a USDT
    cookie in the spec that bpf_usdt_cookie() reads; without BPF cookies (faked) a PIE
    target attached in one process gets its ip-to-spec entry from that process's
    mappings, and the program still finds its spec by the ip it fires at."""
    from bpfreplay import sys as bsys

    monkeypatch.chdir(usdt_build)
    seen = _attach_by_hand_and_fire(usdt_build, usdt_build, 0x5EED)
    assert seen[BY_HAND_HITS:BY_HAND_COOKIE + 1] == [2, 42, 0x5EED]
    assert seen[CONSTANT_HITS] == 0  # nothing else attached
    with bsys.override_syscall(_without_bpf_cookies):
        seen = _attach_by_hand_and_fire(usdt_build, usdt_build, 7)
    assert seen[BY_HAND_HITS:BY_HAND_COOKIE + 1] == [2, 42, 7]
