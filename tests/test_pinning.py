"""Maps pinned by name: the Python loader pins, reuses and unpins them as libbpf 1.1.2
does, call for call. The reference is tests/data/pin/build/pin_load (the system
libbpf, pin_root_path from its command line) recorded with ``bpfreplay record``; what
is pinned is read back with bpftool. Every test works in its own directory under
/sys/fs/bpf and removes it."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bpfreplay.errors import LoaderError
from tests.conftest import ROOT, _built, require_kernel, require_tool

BPFREPLAY = [sys.executable, "-m", "bpfreplay.cli"]
PIN_DATA = ROOT / "tests" / "data" / "pin"
BPFFS = Path("/sys/fs/bpf")
PINNED = ("pinned_array_with_long_name", "pinned_counts")


@pytest.fixture(scope="module")
def pin_objects() -> Path:
    """tests/data/pin/build, made (the objects and pin_load)."""
    _built(PIN_DATA / "build" / "pin_rejected.bpf.o", PIN_DATA)
    return _built(PIN_DATA / "build" / "pin_load", PIN_DATA).parent


@pytest.fixture
def pin_build(pin_objects: Path) -> Path:
    require_kernel()
    return pin_objects


@pytest.fixture
def pin_root() -> Iterator[Path]:
    """A pin root of this test's own that does not exist yet (so that a loader makes
    it, as libbpf does), removed with whatever is pinned in it afterwards."""
    require_kernel()
    if not os.path.ismount(BPFFS):
        subprocess.run(["mount", "-t", "bpf", "bpf", str(BPFFS)], check=True)
    root = BPFFS / f"bpfreplay-pin-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        yield root
    finally:
        _remove(root)


def _remove(root: Path) -> None:
    """Unpin everything under ``root`` and remove the directory."""
    if root.exists():
        for entry in root.iterdir():
            entry.unlink()
        root.rmdir()


def _pinned(root: Path) -> dict[str, dict]:
    """What bpftool says is pinned in ``root``: file name -> its map (bpftool's JSON)."""
    bpftool = require_tool("bpftool")
    out = {}
    for entry in sorted(root.iterdir()):
        result = subprocess.run([bpftool, "-j", "map", "show", "pinned", str(entry)],
                                capture_output=True, text=True, check=True)
        out[entry.name] = json.loads(result.stdout)
    return out


def _record_libbpf(build: Path, obj: str, root: Path, trace: Path) -> int:
    result = subprocess.run([*BPFREPLAY, "record", "-q", "-o", str(trace), "--",
                             str(build / "pin_load"), str(build / obj), str(root)],
                            capture_output=True, text=True, timeout=60)
    return result.returncode


def _load_ours(build: Path, obj: str, root: Path, trace: Path):  # noqa: ANN202
    """Open (pin_root_path=root), load and close the object in this process, traced;
    the closed LoadedObject, or the LoaderError the load raised."""
    from bpfreplay import sys as bsys
    from bpfreplay.loader.kernel import load, open_object
    from bpfreplay.loader.spec import load_spec
    from bpfreplay.recording.self_trace import SelfTracer

    with SelfTracer(str(trace)) as tracer, bsys.traced_by(tracer):
        obj_ = open_object(load_spec(build / obj), pin_root_path=str(root))
        try:
            load(obj_)
        except LoaderError as e:
            return e
        finally:
            obj_.close()
    return obj_


def _compare(reference: Path, ours: Path):  # noqa: ANN202
    from bpfreplay.compare import compare_traces

    return compare_traces(str(reference), str(ours))


def _items(trace: Path) -> list[dict]:
    from bpfreplay.compare import read_normalised

    return read_normalised(str(trace)).items


def _open_fds() -> dict[str, str]:
    fds = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass  # the listing's own fd
    return fds


def _gone(map_ids: list[int], timeout: float = 3.0) -> bool:
    """Whether the kernel freed these maps (bpftool no longer finds their ids)."""
    bpftool = require_tool("bpftool")
    deadline = time.monotonic() + timeout
    while True:
        left = [i for i in map_ids if subprocess.run(
            [bpftool, "map", "show", "id", str(i)], capture_output=True).returncode == 0]
        if not left or time.monotonic() > deadline:
            return not left
        time.sleep(0.05)


# ------------------------------------------------------------------ pure


class _OpenOpts(ctypes.Structure):
    # the head of libbpf 1.1.2's struct bpf_object_open_opts, up to pin_root_path
    _fields_ = [("sz", ctypes.c_size_t), ("object_name", ctypes.c_char_p),
                ("relaxed_maps", ctypes.c_bool), ("pin_root_path", ctypes.c_char_p)]


def _libbpf_pin_paths(path: Path, root: str | None) -> dict[str, str | None] | None:
    """map name -> bpf_map__pin_path() after the system libbpf's bpf_object__open_file()
    with this pin_root_path (None when libbpf refuses to open)."""
    name = ctypes.util.find_library("bpf")
    if name is None:
        pytest.skip("needs libbpf.so")
    lib = ctypes.CDLL(name)  # a handle of our own: its prototypes are ours
    vp = ctypes.c_void_p
    lib.bpf_object__open_file.restype = vp
    lib.bpf_object__open_file.argtypes = [ctypes.c_char_p, ctypes.POINTER(_OpenOpts)]
    lib.bpf_object__next_map.restype, lib.bpf_object__next_map.argtypes = vp, [vp, vp]
    lib.bpf_map__name.restype, lib.bpf_map__name.argtypes = ctypes.c_char_p, [vp]
    lib.bpf_map__pin_path.restype, lib.bpf_map__pin_path.argtypes = ctypes.c_char_p, [vp]
    lib.bpf_object__close.argtypes = [vp]
    lib.libbpf_set_print.restype, lib.libbpf_set_print.argtypes = vp, [vp]
    lib.libbpf_set_print(None)
    opts = _OpenOpts(ctypes.sizeof(_OpenOpts), None, False,
                     root.encode() if root is not None else None)
    obj = lib.bpf_object__open_file(str(path).encode(), ctypes.byref(opts))
    if not obj:
        return None
    try:
        out = {}
        m = lib.bpf_object__next_map(obj, None)
        while m:
            pin = lib.bpf_map__pin_path(m)
            out[lib.bpf_map__name(m).decode()] = pin.decode() if pin else None
            m = lib.bpf_object__next_map(obj, m)
        return out
    finally:
        lib.bpf_object__close(obj)


def _our_pin_paths(path: Path, root: str | None) -> dict[str, str | None] | None:
    from bpfreplay.loader.kernel import open_object
    from bpfreplay.loader.spec import load_spec

    try:
        obj = open_object(load_spec(path), pin_root_path=root)
    except LoaderError:
        return None
    try:
        return {m.spec.name: m.pin_path for m in obj.maps}
    finally:
        obj.close()


_LONGEST = "pinned_array_with_long_name"


@pytest.mark.parametrize("root", [
    None, "/sys/fs/bpf/some/where", "relative/dir", "", "/trailing/",
    "/" + "r" * (4095 - 2 - len(_LONGEST)),  # the longest path that fits PATH_MAX
    "/" + "r" * (4096 - 2 - len(_LONGEST))])  # one byte too long: open fails
def test_pin_paths_are_libbpfs(pin_objects, root):
    """build_map_pin_path() at open, against the system libbpf's bpf_map__pin_path():
    the root (None: /sys/fs/bpf) and the map's whole name (not the 15 bytes the kernel
    keeps) joined with '/', as given ("" and a trailing '/' included); none for maps
    not pinned; a path of PATH_MAX bytes or more fails the open."""
    path = pin_objects / "pinned.bpf.o"
    theirs = _libbpf_pin_paths(path, root)
    assert _our_pin_paths(path, root) == theirs
    if root is None:
        assert theirs is not None and theirs[_LONGEST] == f"/sys/fs/bpf/{_LONGEST}"
    if root is not None and len(root) > 4000:
        assert (theirs is None) == (len(root) + 1 + len(_LONGEST) >= 4096)


# ---------------------------------------------------------------- kernel


def test_fresh_pin_root_creates_and_pins_at_parity(pin_build, pin_root, tmp_path):
    """A pin root with nothing in it: BPF_OBJ_GET finds nothing (ENOENT), the map is
    created and pinned (the root made with mode 0700); the unpinned map is just
    created; closing the object leaves the pins. libbpf and we both start from a
    root that does not exist (the same path, emptied and removed between the runs)."""
    reference, ours = tmp_path / "libbpf.mp", tmp_path / "ours.mp"
    assert _record_libbpf(pin_build, "pinned.bpf.o", pin_root, reference) == 0
    theirs = _pinned(pin_root)
    their_mode = stat.S_IMODE(pin_root.stat().st_mode)
    _remove(pin_root)

    obj = _load_ours(pin_build, "pinned.bpf.o", pin_root, ours)
    assert not isinstance(obj, Exception), obj
    assert [m.pinned for m in obj.maps] == [True, True, False]
    assert not any(m.reused for m in obj.maps)
    mine = _pinned(pin_root)
    assert stat.S_IMODE(pin_root.stat().st_mode) == their_mode == 0o700
    assert sorted(mine) == sorted(theirs) == sorted(PINNED)
    for name in PINNED:  # the same maps pinned (ids aside)
        assert {k: v for k, v in mine[name].items() if k not in ("id", "btf_id")} == \
               {k: v for k, v in theirs[name].items() if k not in ("id", "btf_id")}
    assert mine["pinned_array_with_long_name"]["name"] == "pinned_array_wi"

    report = _compare(reference, ours)
    assert report.differences == []
    assert report.outcome == "parity"
    cmds = [c.get("cmd") for c in _items(ours)]
    assert cmds.count("BPF_OBJ_PIN") == 2 and cmds.count("BPF_OBJ_GET") == 2

    ids = [mine[name]["id"] for name in PINNED]
    _remove(pin_root)
    assert _gone(ids)  # nothing else held them


def test_second_load_reuses_the_pinned_maps_at_parity(pin_build, pin_root, tmp_path):
    """Maps already pinned: BPF_OBJ_GET, two OBJ_GET_INFO_BY_FD (compatibility, then
    bpf_map__reuse_fd), dup3 onto a close-on-exec fd, close of the BPF_OBJ_GET fd; no
    MAP_CREATE and no OBJ_PIN for them. libbpf and we reuse the same pins, and they
    still are the same maps afterwards."""
    assert _record_libbpf(pin_build, "pinned.bpf.o", pin_root, tmp_path / "first.mp") == 0
    before = _pinned(pin_root)
    reference, ours = tmp_path / "libbpf.mp", tmp_path / "ours.mp"
    assert _record_libbpf(pin_build, "pinned.bpf.o", pin_root, reference) == 0
    fds_before = _open_fds()
    obj = _load_ours(pin_build, "pinned.bpf.o", pin_root, ours)
    assert not isinstance(obj, Exception), obj
    assert _open_fds() == fds_before  # the fds of open("/") and BPF_OBJ_GET too
    assert [(m.pinned, m.reused) for m in obj.maps] == [(True, True), (True, True),
                                                        (False, False)]
    assert {n: m["id"] for n, m in _pinned(pin_root).items()} == \
           {n: m["id"] for n, m in before.items()}

    report = _compare(reference, ours)
    assert report.differences == []
    assert report.outcome == "parity"
    items = _items(ours)
    cmds = [c.get("cmd") or c["syscall"] for c in items]
    assert "BPF_OBJ_PIN" not in cmds
    assert cmds.count("dup3") == 2 and cmds.count("BPF_MAP_CREATE") >= 1
    assert [c["args"][2] for c in items if c["syscall"] == "dup3"] == [os.O_CLOEXEC] * 2


def test_failed_load_unpins_what_it_pinned(pin_build, pin_root, tmp_path):
    """The verifier refuses the program after its map was created and pinned: the pin
    is removed again (bpf_object_load's out: path), the root stays; both loads fail
    at the same PROG_LOAD with the same log."""
    reference, ours = tmp_path / "libbpf.mp", tmp_path / "ours.mp"
    assert _record_libbpf(pin_build, "pin_rejected.bpf.o", pin_root, reference) == 1
    assert pin_root.is_dir() and list(pin_root.iterdir()) == []
    _remove(pin_root)

    error = _load_ours(pin_build, "pin_rejected.bpf.o", pin_root, ours)
    assert isinstance(error, LoaderError)
    assert "invalid mem access" in str(error)
    assert pin_root.is_dir() and list(pin_root.iterdir()) == []

    report = _compare(reference, ours)
    # The verifier log prints the map's kernel address (ld_imm64 of a map: "r1 =
    # 0xffff..."), which compare masks: the same failure, the same log.
    assert report.differences == [], report.differences[:3]
    assert report.outcome == "failed_parity"
    assert "invalid mem access" in report.reference_failure.log
    assert report.reference_failure.index == report.our_failure.index
    assert report.reference_failure.errno == report.our_failure.errno
    assert "BPF_OBJ_PIN" in [c.get("cmd") for c in _items(ours)]


def test_mismatched_pin_fails_and_stays(pin_build, pin_root, tmp_path):
    """A map pinned at the path (by bpftool) with another max_entries: libbpf refuses
    to reuse it ("parameter mismatch") and so do we, after the same calls; the pin
    is someone else's, so it stays."""
    bpftool = require_tool("bpftool")
    pin_root.mkdir(mode=0o700)
    foreign = pin_root / "pinned_counts"
    subprocess.run([bpftool, "map", "create", str(foreign), "type", "hash", "key", "4",
                    "value", "8", "entries", "32", "name", "pinned_counts"], check=True)
    foreign_id = _pinned(pin_root)["pinned_counts"]["id"]

    reference, ours = tmp_path / "libbpf.mp", tmp_path / "ours.mp"
    assert _record_libbpf(pin_build, "pinned.bpf.o", pin_root, reference) == 1
    error = _load_ours(pin_build, "pinned.bpf.o", pin_root, ours)
    assert isinstance(error, LoaderError)
    assert "parameter mismatch" in str(error) and str(foreign) in str(error)
    assert {n: m["id"] for n, m in _pinned(pin_root).items()} == {"pinned_counts":
                                                                  foreign_id}
    report = _compare(reference, ours)
    assert report.differences == []
    cmds = [c.get("cmd") or c["syscall"] for c in _items(ours)]
    assert "BPF_MAP_CREATE" not in cmds[cmds.index("BPF_OBJ_GET"):]


def test_run_pin_root_option(pin_build, pin_root):
    """bpfreplay run --pin-root: the object's maps pinned there, and still pinned after
    the run tears everything down (destroying an object never unpins)."""
    result = subprocess.run([*BPFREPLAY, "run", str(pin_build / "pinned.bpf.o"),
                             "--pin-root", str(pin_root), "--duration", "0.1"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert sorted(_pinned(pin_root)) == sorted(PINNED)


def test_pinned_meanwhile_is_reused_after_eexist(pin_build, pin_root, tmp_path):
    """libbpf's race path: nothing pinned when it looked (BPF_OBJ_GET: ENOENT), but
    BPF_OBJ_PIN then finds the path taken (EEXIST): it closes its new map and looks
    again, once, reusing what is pinned there. The first BPF_OBJ_GET is made to
    answer ENOENT; the pin (made by bpftool) and every other answer are real."""
    import errno

    from bpfreplay import sys as bsys
    from bpfreplay.loader.kernel import load, open_object
    from bpfreplay.loader.spec import load_spec
    from bpfreplay.uapi import cmd_value

    bpftool = require_tool("bpftool")
    pin_root.mkdir(mode=0o700)
    subprocess.run([bpftool, "map", "create", str(pin_root / "pinned_counts"), "type",
                    "hash", "key", "4", "value", "8", "entries", "64", "name",
                    "pinned_counts"], check=True)
    theirs = _pinned(pin_root)["pinned_counts"]["id"]
    obj_get, obj_pin = cmd_value("BPF_OBJ_GET"), cmd_value("BPF_OBJ_PIN")
    calls: list[tuple[int, int]] = []

    def racing(number, args):
        if number == 321 and args[0] in (obj_get, obj_pin, cmd_value("BPF_MAP_CREATE")):
            if args[0] == obj_get and not calls:
                calls.append((args[0], errno.ENOENT))
                return -1, errno.ENOENT
            ret, err = bsys._libc_syscall(number, args)
            calls.append((args[0], err))
            return ret, err
        return bsys._libc_syscall(number, args)

    with bsys.override_syscall(racing):
        obj = open_object(load_spec(pin_build / "pinned.bpf.o"), pin_root_path=str(pin_root))
        try:
            load(obj)
            m = obj.map("pinned_counts")
            with open(f"/proc/self/fdinfo/{m.fd}") as f:
                map_id = int(next(line for line in f if line.startswith("map_id:")).split()[1])
            assert (m.pinned, m.reused, map_id) == (True, True, theirs)
        finally:
            obj.close()
    create = cmd_value("BPF_MAP_CREATE")
    assert calls[:4] == [(obj_get, errno.ENOENT), (create, 0), (obj_pin, errno.EEXIST),
                         (obj_get, 0)]
    assert {n: m["id"] for n, m in _pinned(pin_root).items()}["pinned_counts"] == theirs
