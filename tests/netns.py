"""Test helpers for network attachments: a network namespace of the test's own with a
veth pair in it (unique names), frames sent over the pair, what `tc`, `ip` and the
process's BPF fds show, and a `bpfreplay run` followed until it is running."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import ROOT, require_tool

BPFREPLAY = [sys.executable, "-m", "bpfreplay.cli"]
TEST_ETHERTYPE = 0x88B5  # tests/data/net/counters.bpf.c counts frames of this type only
_serial = itertools.count()


@dataclass(frozen=True)
class Namespace:
    name: str
    receiver: str  # the veth end the programs are attached to
    sender: str  # its peer, where the test's frames leave

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run in the namespace (only the network namespace changes: /sys and
        the BPF file systems stay as they are)."""
        return ["nsenter", f"--net=/run/netns/{self.name}", *argv]

    def run(self, argv: list[str]) -> str:
        return subprocess.run(self.command(argv), check=True, capture_output=True,
                              text=True).stdout


@contextlib.contextmanager
def veth_namespace() -> Iterator[Namespace]:
    """A namespace `brNNNNNxK` with veth `rxNNNNNxK` <-> `txNNNNNxK`, both up; removed
    (with everything in it) afterwards."""
    require_tool("ip")
    require_tool("nsenter")
    tag = f"{os.getpid() % 100000}x{next(_serial)}"
    ns = Namespace(f"br{tag}", f"rx{tag}", f"tx{tag}")
    subprocess.run(["ip", "netns", "add", ns.name], check=True)
    try:
        subprocess.run(["ip", "-n", ns.name, "link", "add", ns.receiver, "type", "veth",
                        "peer", "name", ns.sender], check=True)
        for dev in (ns.receiver, ns.sender, "lo"):
            subprocess.run(["ip", "-n", ns.name, "link", "set", dev, "up"], check=True)
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns.name], check=False)


_SEND = """
import socket, sys
dev, count, ethertype = sys.argv[1], int(sys.argv[2]), int(sys.argv[3], 0)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((dev, 0))
frame = b"\\xff" * 6 + b"\\x02\\x00\\x00\\x00\\x00\\x01" + ethertype.to_bytes(2, "big") + bytes(46)
for _ in range(count):
    s.send(frame)
"""


def send_frames(ns: Namespace, count: int, ethertype: int = TEST_ETHERTYPE) -> None:
    """``count`` Ethernet broadcast frames of ``ethertype`` out of the sender end: they
    arrive on the receiver end."""
    ns.run([sys.executable, "-c", _SEND, ns.sender, str(count), hex(ethertype)])


def bpf_ids(pid: int) -> dict[str, set[int]]:
    """The ids of the BPF maps, programs and links the process holds fds of (its
    /proc/PID/fdinfo): the objects this test made, whatever else the machine runs."""
    found: dict[str, set[int]] = {"map": set(), "prog": set(), "link": set()}
    fd_dir = Path(f"/proc/{pid}/fdinfo")
    for entry in fd_dir.iterdir():
        try:
            text = entry.read_text()
        except OSError:
            continue
        for kind in found:
            match = re.search(rf"^{kind}_id:\s+(\d+)$", text, re.M)
            if match:
                found[kind].add(int(match.group(1)))
    return found


def bpftool_json(*argv: str) -> object:
    out = subprocess.run(["bpftool", "-j", *argv], capture_output=True, text=True)
    return json.loads(out.stdout) if out.returncode == 0 and out.stdout.strip() else None


def map_id_by_name(pid: int, name: str) -> int:
    for map_id in bpf_ids(pid)["map"]:
        info = bpftool_json("map", "show", "id", str(map_id))
        if isinstance(info, dict) and info.get("name") == name:
            return map_id
    raise AssertionError(f"process {pid} holds no map named {name}")


def array_values(map_id: int) -> list[int]:
    """An array map of u64 values, as `bpftool map dump` prints it (through its BTF)."""
    dump = bpftool_json("map", "dump", "id", str(map_id))
    assert isinstance(dump, list), dump
    entries = [entry["formatted"] for entry in dump]
    return [entry["value"] for entry in sorted(entries, key=lambda e: e["key"])]


def exists(kind: str, object_id: int) -> bool:
    return bpftool_json(kind, "show", "id", str(object_id)) is not None


class Running:
    """`bpfreplay run ARGS` started (in a namespace if given) and read until it says it
    is running; stopped with SIGINT as a user's Ctrl-C."""

    def __init__(self, args: list[str], ns: Namespace | None = None) -> None:
        argv = [*BPFREPLAY, "run", *args]
        self.proc = subprocess.Popen(ns.command(argv) if ns else argv, cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.stderr_lines: list[str] = []
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line)
            if line.startswith("bpfreplay: running"):
                break
        else:
            self.proc.wait(timeout=60)
            raise AssertionError("bpfreplay run ended before running:\n"
                                 + "".join(self.stderr_lines)[-3000:])

    @property
    def pid(self) -> int:
        """The Python process's pid (nsenter execs it in place)."""
        return self.proc.pid

    def stop(self) -> tuple[int, str, str]:
        self.proc.send_signal(signal.SIGINT)
        out, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, out, "".join(self.stderr_lines) + err
