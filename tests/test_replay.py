"""``bpfreplay replay`` on the real kernel: recordings made now by ``bpfreplay record``
of the C reference and of libbpf loaders (refload, pin_load), replayed in bpfreplay's
process; what the kernel answered the replay is read back from the replay's own trace
(--save-trace), the state of the kernel from /proc and bpftool."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bpfreplay.trace import TraceWriter, read_trace
from bpfreplay.uapi import cmd_name
from tests.conftest import REFERENCE_DIR, ROOT, _built, require_kernel, require_tool

BPFREPLAY = [str(Path(sys.executable).parent / "bpfreplay")]
REFLOAD = ROOT / "tests" / "corpus" / "build" / "refload"
REPLAY_DATA = ROOT / "tests" / "data" / "replay"


def _record(tmp_path: Path, name: str, *argv: str) -> Path:
    out = tmp_path / f"{name}.mp"
    result = subprocess.run([*BPFREPLAY, "record", "-q", "-o", str(out), "--", *argv],
                            capture_output=True, text=True, timeout=120)
    assert out.exists(), result.stderr
    return out


def _replay(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BPFREPLAY, "replay", *args], capture_output=True, text=True,
                          timeout=timeout)


def _calls(path: Path) -> list[dict]:
    with read_trace(str(path)) as trace:
        return list(trace.calls())


def _refload() -> Path:
    return _built(REFLOAD, ROOT / "tests" / "corpus")


def test_a_fresh_recording_of_the_reference_replays_with_every_call_the_same(tmp_path):
    require_kernel()
    minimal = _built(REFERENCE_DIR / "minimal", REFERENCE_DIR)
    recorded = _record(tmp_path, "minimal", str(minimal), "1")
    ours = tmp_path / "ours.mp"
    result = _replay("--json", "--save-trace", str(ours), str(recorded))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    calls = _calls(recorded)
    assert report["summary"] == {"same": len(calls), "different": 0, "skipped": 0}
    assert [c["status"] for c in report["calls"]] == ["same"] * len(calls)
    assert [(p["name"], p["recorded"], p["here"]) for p in report["programs"]] == [
        ("handle_tp", "loaded", "loaded")]
    # Said before the first call: what it will make.
    assert "it will make 5 map(s) (libbpf_mmap, libbpf_global, minimal_.bss" in result.stderr
    # The replay made the same commands in the same order (its own trace, as recorded by
    # the same capture code), and the .bss image carries our pid instead of theirs.
    mine = _calls(ours)
    assert [(c["syscall"], c.get("cmd")) for c in mine] == \
        [(c["syscall"], c.get("cmd")) for c in calls]
    our_pid = next(c["pid"] for c in mine)
    updates = [c for c in mine if cmd_name(c.get("cmd", -1)) == "BPF_MAP_UPDATE_ELEM"]
    assert int.from_bytes(updates[0]["in"]["value"][:4], "little") == our_pid


def _replay_process_map(pid: int, name: str) -> int | None:
    """The id of the map called ``name`` that process ``pid`` holds open (its fdinfo)."""
    fd_dir = Path(f"/proc/{pid}/fdinfo")
    try:
        entries = list(fd_dir.iterdir())
    except OSError:
        return None
    for entry in entries:
        try:
            info = dict(line.split(":\t", 1) for line in entry.read_text().splitlines()
                        if ":\t" in line)
        except OSError:
            continue
        map_id = info.get("map_id")
        if map_id is None:
            continue
        shown = subprocess.run(["bpftool", "map", "show", "id", map_id.strip(), "--json"],
                               capture_output=True, text=True)
        if shown.returncode == 0 and json.loads(shown.stdout).get("name") == name:
            return int(map_id)
    return None


def _bss_while_running(recorded: Path, *extra: str) -> tuple[int, dict]:
    """Replay with --duration and read the .bss of the map the replay process holds
    (bpftool map dump while the program runs): (replay pid, the .bss variables)."""
    process = subprocess.Popen([*BPFREPLAY, "replay", "--duration", "4", *extra,
                                str(recorded)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        map_id = None
        while map_id is None and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.3)
            map_id = _replay_process_map(process.pid, "counter_.bss")
        assert map_id is not None, "the replay never held the .bss map"
        time.sleep(2.5)  # the wait writes a dot each second: the program fires
        dumped = subprocess.run(["bpftool", "map", "dump", "id", str(map_id), "--json"],
                                capture_output=True, text=True, check=True)
        variables = {}
        for entry in json.loads(dumped.stdout)[0]["formatted"]["value"][".bss"]:
            variables.update(entry)
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, out + err
        return process.pid, variables
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_with_duration_the_replayed_program_fires_for_the_replay_process(tmp_path):
    """refload sets my_pid to its own pid before load; the replay's .bss image carries
    the replay's pid instead, so its program counts the replay's own writes (a dot a
    second). With --exact the recording's pid stays, and nothing is counted."""
    require_kernel()
    require_tool("bpftool")
    counter = _built(REPLAY_DATA / "build" / "counter.bpf.o", REPLAY_DATA)
    recorded = _record(tmp_path, "counter", str(_refload()), "-s", "my_pid=pid",
                       str(counter), "1")
    recorded_pid = next(c["pid"] for c in _calls(recorded))
    pid, variables = _bss_while_running(recorded)
    assert variables["my_pid"] == pid
    assert variables["hits"] > 0
    pid, variables = _bss_while_running(recorded, "--exact")
    assert variables["my_pid"] == recorded_pid != pid
    assert variables["hits"] == 0


def test_a_verifier_rejected_program_replays_with_the_same_verdict_and_log(tmp_path):
    require_kernel()
    rejected = _built(ROOT / "tests" / "data" / "run" / "build" / "rejected.bpf.o",
                      ROOT / "tests" / "data" / "run")
    recorded = _record(tmp_path, "rejected", str(_refload()), str(rejected))
    ours = tmp_path / "ours.mp"
    result = _replay("--json", "--save-trace", str(ours), str(recorded))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert [(p["name"], p["recorded"], p["here"]) for p in report["programs"]
            if p["name"] == "count_writes"][-1] == ("count_writes", "EACCES", "EACCES")

    def logs(path: Path) -> list[bytes]:
        return [c["out"]["log_buf"] for c in _calls(path)
                if cmd_name(c.get("cmd", -1)) == "BPF_PROG_LOAD" and c.get("errno")
                and (c.get("out") or {}).get("log_buf")]

    theirs, mine = logs(recorded), logs(ours)
    assert theirs and b"invalid mem access" in theirs[-1]
    strip = [log.split(b"\n") for log in (theirs[-1], mine[-1])]
    # the same log, line by line, but for the kernel address of the map
    assert len(strip[0]) == len(strip[1])
    for a, b in zip(*strip, strict=True):
        assert a == b or (b"0xffff" in a and b"0xffff" in b)


def test_pins_go_to_a_private_directory_that_is_gone_afterwards(tmp_path):
    require_kernel()
    pin_data = ROOT / "tests" / "data" / "pin"
    pin_load = _built(pin_data / "build" / "pin_load", pin_data)
    obj = pin_data / "build" / "pinned.bpf.o"
    root = Path("/sys/fs/bpf") / f"bpfreplay-test-replay-{os.getpid()}"
    try:
        recorded = _record(tmp_path, "pinned", str(pin_load), str(obj), str(root))
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)
    ours = tmp_path / "ours.mp"
    result = _replay("--save-trace", str(ours), str(recorded))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 pin(s) under a private directory" in result.stderr
    pins = [c["in"]["pathname"].decode() for c in _calls(ours)
            if cmd_name(c.get("cmd", -1)) == "BPF_OBJ_PIN"]
    assert len(pins) == 2
    for pin in pins:
        assert pin.startswith("/sys/fs/bpf/bpfreplay-replay-")
        assert pin.endswith(f"{root.name}/{Path(pin).name}")
        assert not Path(pin).exists() and not Path(pin).parent.parent.exists()
    assert not root.exists()


def _rewritten(source: Path, target: Path, change) -> Path:
    with read_trace(str(source)) as trace:
        header, records = trace.header, list(trace.records())
    with TraceWriter(str(target), header) as writer:
        for record in records:
            writer.write(change(record) if record.get("type") == "call" else record)
    return target


def test_a_call_the_kernel_answers_otherwise_is_a_difference_and_its_users_are_skipped(
        tmp_path):
    """A recording whose .bss MAP_CREATE asks for a map type no kernel has: the replay
    fails there (the recording said it succeeded) and leaves out the calls that needed
    that map, and the calls that needed those, each naming the call it needs."""
    require_kernel()
    minimal = _built(REFERENCE_DIR / "minimal", REFERENCE_DIR)
    recorded = _record(tmp_path, "minimal", str(minimal), "1")

    def change(call: dict) -> dict:
        if cmd_name(call.get("cmd", -1)) == "BPF_MAP_CREATE" and b"minimal_.bss" in call["attr"]:
            call = dict(call, attr=(4242).to_bytes(4, "little") + call["attr"][4:])
        return call

    changed = _rewritten(recorded, tmp_path / "changed.mp", change)
    result = _replay("--json", str(changed))
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    create = next(c for c in report["calls"] if c["call"].startswith(
        "bpf BPF_MAP_CREATE map:minimal_.bss"))
    assert create["status"] == "different"
    assert {d["path"] for d in create["differences"]} >= {"ret", "errno"}
    skipped = [c for c in report["calls"] if c["status"] == "skipped"]
    # each needs the failed map, or a call that was left out because of it (the program
    # loaded with the map's fd, the link of that program ...)
    left_out = {create["index"]} | {c["index"] for c in skipped}
    assert skipped and all(c["needs"] in left_out for c in skipped)
    assert any(c["needs"] == create["index"] and "map_fd" in c["reason"] for c in skipped)
    assert {c["call"].split()[0] for c in skipped} >= {"bpf", "mmap", "close", "munmap"}
    assert report["summary"]["skipped"] == len(skipped)


def test_a_trace_that_cannot_be_read_is_exit_2(tmp_path):
    garbage = tmp_path / "garbage.mp"
    garbage.write_bytes(b"\x93not a trace")
    result = _replay(str(garbage))
    assert result.returncode == 2
    assert "cannot replay" in result.stderr and "Traceback" not in result.stderr
    result = _replay(str(tmp_path / "missing.mp"))
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_ctrl_c_during_the_calls_tears_down_and_exits_130(tmp_path):
    """SIGINT while the replay runs its calls (a long trace: the reference's minimal
    with its load repeated): 130, said, after the replay tore down what it made."""
    require_kernel()
    minimal = _built(REFERENCE_DIR / "minimal", REFERENCE_DIR)
    recorded = _record(tmp_path, "minimal", str(minimal), "1")
    with read_trace(str(recorded)) as trace:
        header, records = trace.header, list(trace.records())
    long = tmp_path / "long.mp"
    with TraceWriter(str(long), header) as writer:
        writer.write(records[0])
        calls = [r for r in records if r.get("type") == "call"]
        # the feature probes, many times over (each closes what it made): long enough
        # to be interrupted in the middle
        body = [c for c in calls[:29] if cmd_name(c.get("cmd", -1)) != "BPF_BTF_LOAD"
                or c["index"] < 20]
        for round_number in range(4000):
            for call in body:
                writer.write(dict(call, index=round_number * 100 + call["index"]))
    process = subprocess.Popen([*BPFREPLAY, "replay", str(long)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _replay_process_map(process.pid, "libbpf_global") \
            is None and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, out + err
    assert "interrupted after" in err and "Traceback" not in err
