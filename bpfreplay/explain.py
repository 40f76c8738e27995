"""``bpfreplay explain``: turning recorded calls into something to read or to script.

The JSON form (one object per recorded call) is the stable interface other tools
use; its schema is in docs/trace-format.md.
"""

from __future__ import annotations

import argparse
import errno as errno_module
import json
import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from bpfreplay.errors import BpfReplayError
from bpfreplay.uapi import BPF_COMMON_ATTRS, cmd_name


def errno_name(value: int | None) -> str | None:
    if value is None:
        return None
    return errno_module.errorcode.get(value, str(value))


def _hex(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _hex(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_hex(v) for v in value]
    return value


def call_to_json(record: dict[str, Any]) -> dict[str, Any]:
    """The JSON object of one call record: names where we know them, bytes in hex."""
    out: dict[str, Any] = {
        "index": record.get("index"),
        "pid": record.get("pid"),
        "tid": record.get("tid"),
        "syscall": record.get("syscall"),
    }
    if record.get("syscall") == "bpf":
        cmd = record.get("cmd", 0)
        out["cmd"] = cmd_name(cmd) or str(cmd & ~BPF_COMMON_ATTRS)
        out["common_attrs"] = bool(cmd & BPF_COMMON_ATTRS)
        out["size"] = record.get("size")
    else:
        out["cmd"] = None
        out["size"] = None
    out["ret"] = record.get("ret")
    out["errno"] = errno_name(record.get("errno"))
    out["args"] = [f"{a:#x}" for a in record.get("args", [])]
    for key in ("attr", "attr_out", "common", "in", "out", "object", "faults", "replaced",
                "attr_fault", "ts", "dur"):
        if key in record:
            out[key] = _hex(record[key])
    return out


def write_json_lines(records: Iterable[dict[str, Any]], stream: TextIO) -> int:
    count = 0
    for record in records:
        stream.write(json.dumps(call_to_json(record), separators=(",", ":")))
        stream.write("\n")
        count += 1
    return count


def calls_only(records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    return (r for r in records if r.get("type") == "call")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("trace", help="trace file written by bpfreplay record")
    parser.add_argument("--json", action="store_true", help="one JSON object per call and line")


def run(args: argparse.Namespace) -> int:
    from bpfreplay.trace import read_trace

    with read_trace(args.trace) as trace:
        try:
            if args.json:
                write_json_lines(calls_only(trace.records()), sys.stdout)
            else:
                raise BpfReplayError("explain: only --json is available in this version")
            sys.stdout.flush()
        except BrokenPipeError:
            # The reader (head, less) is gone: not an error of ours.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 0
        if trace.truncated:
            print(f"bpfreplay: {args.trace} ends inside a record ({trace.trailing_bytes} "
                  "bytes ignored): the recorder was probably killed", file=sys.stderr)
    return 0
