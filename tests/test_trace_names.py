"""Names the recording machine gave (trace format 2): a tracepoint event's
"category:name", a dynamic PMU's name. They come from the recorder's tracefs/sysfs, are
kept in the call record (``tracepoint``, ``pmu``), and explain shows them whatever the
explaining machine's tracefs says (``BPFREPLAY_TRACEFS`` empty, empty, or naming the id
otherwise); a version-1 trace is named from this machine's tracefs, and says so.

The expected names are read from the real tracefs (the id file of the tracepoint the
reference attaches to), never from our own decoding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import msgpack
import pytest

from bpfreplay.errors import TraceFormatError
from bpfreplay.replaying.perf import recorded_tracepoint
from bpfreplay.trace import TraceWriter, read_trace
from bpfreplay.tracefs import tracefs_roots
from tests.conftest import ROOT, kernel_required, require_kernel, require_tool

BPFREPLAY = str(ROOT / ".venv" / "bin" / "bpfreplay")
TRACEPOINT = ("syscalls", "sys_enter_write")  # minimal.bpf.c's SEC("tp/syscalls/...")


def _real_id(category: str, name: str) -> int:
    for root in ("/sys/kernel/debug/tracing", "/sys/kernel/tracing"):
        path = Path(root, "events", category, name, "id")
        if path.exists():
            return int(path.read_text())
    pytest.fail(f"no tracefs with {category}:{name} (mount -t tracefs tracefs "
                "/sys/kernel/tracing)")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, minimal_binary) -> Path:
    path = tmp_path_factory.mktemp("names") / "minimal.mp"
    result = subprocess.run([BPFREPLAY, "record", "-q", "-o", str(path), "--",
                             str(minimal_binary), "1"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return path


def _perf_opens(path: Path) -> list[dict]:
    with read_trace(str(path)) as trace:
        return [c for c in trace.calls() if c["syscall"] == "perf_event_open"]


def _explain(path: Path, tracefs: str | None, *extra: str) -> str:
    env = dict(os.environ)
    if tracefs is None:
        env.pop("BPFREPLAY_TRACEFS", None)
    else:
        env["BPFREPLAY_TRACEFS"] = tracefs
    result = subprocess.run([BPFREPLAY, "explain", *extra, str(path)], capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _fake_tracefs(root: Path, tp_id: int) -> str:
    """A tracefs whose id ``tp_id`` is another tracepoint (as on another kernel)."""
    event = root / "events" / "elsewhere" / "other_event"
    event.mkdir(parents=True)
    (event / "id").write_text(f"{tp_id}\n")
    return str(root)


def test_recording_keeps_the_tracepoint_name(recorded):
    real = _real_id(*TRACEPOINT)
    opens = [c for c in _perf_opens(recorded) if int.from_bytes(c["attr"][:4], "little") == 2]
    assert opens, "the reference made no PERF_TYPE_TRACEPOINT perf_event_open"
    for call in opens:
        assert int.from_bytes(call["attr"][8:16], "little") == real
        assert call["tracepoint"] == ":".join(TRACEPOINT)
        assert recorded_tracepoint(call) == ":".join(TRACEPOINT)
    with read_trace(str(recorded)) as trace:
        assert trace.header["version"] == 2


@pytest.mark.parametrize("where", ["disabled", "empty", "other"])
def test_explain_names_the_recorded_tracepoint_elsewhere(recorded, tmp_path, where):
    real = _real_id(*TRACEPOINT)
    tracefs = {"disabled": "", "empty": str(tmp_path),
               "other": _fake_tracefs(tmp_path, real)}[where]
    out = _explain(recorded, tracefs)
    line = next(li for li in out.splitlines() if "perf_event_open(" in li)
    assert f"config={real} /* syscalls:sys_enter_write */" in line
    assert "= " in line and "<perf_event syscalls:sys_enter_write>" in line
    assert "elsewhere" not in out and "trace format 1" not in out
    calls = [json.loads(li) for li in _explain(recorded, tracefs, "--json").splitlines()]
    perf = next(c for c in calls if c["syscall"] == "perf_event_open")
    assert perf["tracepoint"] == "syscalls:sys_enter_write"
    assert perf["fields"]["config"] == f"{real} /* syscalls:sys_enter_write */"


def _as_version_1(source: Path, target: Path) -> None:
    """The same trace as a version-1 writer made it: no names kept."""
    with open(source, "rb") as f:
        objects = list(msgpack.Unpacker(f, raw=False))
    objects[0]["version"] = 1
    for record in objects[1:]:
        record.pop("tracepoint", None)
        record.pop("pmu", None)
    target.write_bytes(b"".join(msgpack.packb(o, use_bin_type=True) for o in objects))


def test_version_1_trace_is_named_here_and_says_so(recorded, tmp_path):
    real = _real_id(*TRACEPOINT)
    v1 = tmp_path / "v1.mp"
    _as_version_1(recorded, v1)
    here = _explain(v1, None)
    assert "# trace format 1: tracepoint and PMU names below come from this machine" in here
    assert f"config={real} /* syscalls:sys_enter_write */" in here
    other = _explain(v1, _fake_tracefs(tmp_path / "fs", real))
    assert f"config={real} /* elsewhere:other_event */" in other  # this machine's, as said
    blind = _explain(v1, "")
    assert f"config={real}}}" in blind and "sys_enter_write */" not in blind
    with read_trace(str(v1)) as trace:
        assert recorded_tracepoint(next(c for c in trace.calls()
                                        if c["syscall"] == "perf_event_open")) is None


def test_committed_trace_still_explains():
    """traces/minimal.mp was written by a version-1 recorder (until `make traces` is run
    again): it explains, and says where its names come from."""
    path = ROOT / "traces" / "minimal.mp"
    with read_trace(str(path)) as trace:
        version = trace.header["version"]
    out = _explain(path, None)
    assert out.splitlines()[1].startswith("# trace format 1: ") == (version == 1)
    assert "perf_event_open(" in out


def test_tracefs_roots_follow_the_environment(monkeypatch):
    monkeypatch.setenv("BPFREPLAY_TRACEFS", "")
    assert tracefs_roots() == []
    monkeypatch.setenv("BPFREPLAY_TRACEFS", "/some/where")
    assert tracefs_roots() == ["/some/where"]
    monkeypatch.delenv("BPFREPLAY_TRACEFS")
    assert tracefs_roots() == ["/sys/kernel/debug/tracing", "/sys/kernel/tracing"]


def _one_call(tmp_path: Path, version: int, **keys) -> Path:
    path = tmp_path / f"v{version}.mp"
    with TraceWriter(str(path), {"argv": ["x"]}):
        pass
    objects = list(msgpack.Unpacker(open(path, "rb"), raw=False))
    objects[0]["version"] = version
    objects.append({"type": "call", "index": 0, "pid": 1, "tid": 1,
                    "syscall": "perf_event_open", **keys})
    path.write_bytes(b"".join(msgpack.packb(o, use_bin_type=True) for o in objects))
    return path


@pytest.mark.parametrize("version", [1, 2])
def test_both_versions_are_read(tmp_path, version):
    path = _one_call(tmp_path, version, tracepoint="a:b", pmu="uprobe",
                     stack=[{"pc": 0x401000, "later": "key"}])
    with read_trace(str(path)) as trace:
        assert trace.header["version"] == version
        assert [c["tracepoint"] for c in trace.calls()] == ["a:b"]


@pytest.mark.parametrize("keys, words", [({"tracepoint": 715}, "'tracepoint' is a int"),
                                         ({"pmu": b"uprobe"}, "'pmu' is a bytes"),
                                         ({"stack": "main"}, "'stack' is a str")])
def test_names_of_the_wrong_type_are_refused(tmp_path, keys, words):
    path = _one_call(tmp_path, 2, **keys)
    with read_trace(str(path)) as trace, pytest.raises(TraceFormatError, match=words):
        list(trace.calls())


@pytest.fixture(scope="module")
def crafted_trace(tmp_path_factory) -> Path:
    """tests/data/attrs/crafted.c opens a uprobe PMU event (config1 = "/bin/true")."""
    require_kernel()
    cc = require_tool("cc")
    tmp = tmp_path_factory.mktemp("crafted")
    binary = tmp / "crafted"
    subprocess.run([cc, "-O2", "-Wall", "-o", str(binary),
                    str(ROOT / "tests" / "data" / "attrs" / "crafted.c")], check=True,
                   capture_output=True)
    trace = tmp / "crafted.mp"
    result = subprocess.run([BPFREPLAY, "record", "-q", "-o", str(trace), "--", str(binary)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return trace


def test_recording_keeps_the_pmu_name_and_probe_target(crafted_trace, tmp_path):
    pmu = Path("/sys/bus/event_source/devices/uprobe/type")
    if not pmu.exists():
        if kernel_required():
            pytest.fail("no uprobe PMU in sysfs")
        pytest.skip("no uprobe PMU in sysfs")
    uprobe_type = int(pmu.read_text())
    opens = [c for c in _perf_opens(crafted_trace)
             if int.from_bytes(c["attr"][:4], "little") == uprobe_type]
    assert opens and all(c["pmu"] == "uprobe" for c in opens)
    assert opens[0]["in"]["config1"] == b"/bin/true"
    out = _explain(crafted_trace, "")
    line = next(li for li in out.splitlines() if f"type={uprobe_type} /* uprobe PMU */" in li)
    assert 'uprobe_path="/bin/true"' in line
    # Without the recorded name a version-2 trace does not ask this machine's sysfs.
    with open(crafted_trace, "rb") as f:
        objects = list(msgpack.Unpacker(f, raw=False))
    for record in objects[1:]:
        record.pop("pmu", None)
    nameless = tmp_path / "nameless.mp"
    nameless.write_bytes(b"".join(msgpack.packb(o, use_bin_type=True) for o in objects))
    assert "uprobe PMU" not in _explain(nameless, "")


def test_an_event_made_while_recording_is_named(tmp_path):
    """libbpf's legacy probes make their tracefs event just before perf_event_open: the
    recorder's table, read at the first tracepoint event, is read again for an id it
    does not know. The event is gone once explained, and tracefs is disabled too."""
    require_kernel()
    root = next((r for r in ("/sys/kernel/debug/tracing", "/sys/kernel/tracing")
                 if Path(r, "uprobe_events").exists()), None)
    if root is None:
        pytest.fail("no tracefs with uprobe_events")
    trace = tmp_path / "legacy.mp"
    result = subprocess.run([BPFREPLAY, "record", "-q", "-o", str(trace), "--",
                             sys.executable, str(ROOT / "tests" / "data" / "record" /
                                                 "legacy_uprobe_event.py"), root],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    name = result.stdout.strip().splitlines()[-1]
    assert name not in Path(root, "uprobe_events").read_text()  # removed by the tracee
    assert [c.get("tracepoint") for c in _perf_opens(trace)] == [
        "syscalls:sys_enter_getpid", f"uprobes:{name}"]
    out = _explain(trace, "")
    assert f"/* uprobes:{name} */" in out and f"<perf_event uprobes:{name}>" in out


@pytest.mark.parametrize("stack, words", [
    ([1], "'stack' frame 0 is a int, not a map"),
    ([{"module": "/lib/x"}], "'stack' frame 0 has no 64-bit 'pc'"),
    ([{"pc": 1}, {"pc": 2, "offset": "0x10"}], "'stack' frame 1: 'offset' is not a 64-bit"),
    ([{"pc": 1, "symbol": b"main"}], "'stack' frame 0: 'symbol' is a bytes"),
    ([{"pc": 1, "exported": 1}], "'stack' frame 0: 'exported' is not a boolean"),
    ([{"pc": 1, "inlined": "main"}], "'stack' frame 0: 'inlined' is not a list of strings"),
])
def test_stack_frames_of_the_wrong_shape_are_refused(tmp_path, stack, words):
    path = _one_call(tmp_path, 2, stack=stack)
    with read_trace(str(path)) as trace, pytest.raises(TraceFormatError, match=words):
        list(trace.calls())
