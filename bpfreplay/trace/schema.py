"""Names shared by the trace writer and reader, and the check of every object read
against the format (docs/trace-format.md): types, ranges and sizes, so that explain,
compare and replay only ever see records of the format's shape."""

from __future__ import annotations

import math
from typing import Any

FORMAT_NAME = "bpfreplay-trace"
FORMAT_VERSION = 2  # what the writers write
# What the readers read: version 1 has no recorded names (tracepoint, pmu) and no
# followed pointer arrays (docs/trace-format.md, "Versions").
READABLE_VERSIONS = (1, 2)

# Record types that follow the header.
CALL = "call"        # one recorded syscall
PROCESS = "process"  # first sight of a traced process: exe, libbpf it mapped
EXIT = "exit"        # a traced process ended

# Ranges of the integers the format holds.
_U64 = (0, (1 << 64) - 1)
_S64 = (-(1 << 63), (1 << 63) - 1)
_REG = (-(1 << 63), (1 << 64) - 1)  # a register: written unsigned, or as a signed int
_C_INT = (-(1 << 31), (1 << 31) - 1)
_PID = (0, (1 << 31) - 1)
_CMD = (-(1 << 31), (1 << 32) - 1)  # bpf()'s int cmd, as passed or as a register
_U32 = (0, (1 << 32) - 1)
_MAX_ATTR = 1 << 16  # bpf() takes at most a page (E2BIG past it); perf attrs are smaller
_MAX_ARGS = 6
_MAX_CPUS = 1 << 16  # the header's possible_cpus sizes per-CPU values: a bound on them

# A record as the reader gives it (the msgpack map of one record).
Record = dict[str, Any]


def _is_int(value: Any, bounds: tuple[int, int]) -> bool:
    return type(value) is int and bounds[0] <= value <= bounds[1]


def _is_text(value: Any) -> bool:
    """A str that is valid UTF-8 (the reader keeps invalid bytes as surrogates)."""
    if type(value) is not str:
        return False
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _int_problem(record: Record, key: str, bounds: tuple[int, int], *,
                 nullable: bool = False, required: bool = False) -> str | None:
    if key not in record:
        return f"no '{key}'" if required else None
    value = record[key]
    if value is None and nullable:
        return None
    if type(value) is not int:
        return f"'{key}' is a {_kind(value)}, not an integer"
    if not bounds[0] <= value <= bounds[1]:
        return f"'{key}' {value} out of range [{bounds[0]}, {bounds[1]}]"
    return None


def _text_problem(record: Record, key: str, *, nullable: bool = False,
                  required: bool = False) -> str | None:
    if key not in record:
        return f"no '{key}'" if required else None
    value = record[key]
    if value is None and nullable:
        return None
    if not _is_text(value):
        return f"'{key}' is a {_kind(value)}, not a string" if type(value) is not str \
            else f"'{key}' is not valid UTF-8"
    return None


def _scalar_map_problem(record: Record, key: str) -> str | None:
    """A map of names to scalars (``object``, ``replaced``: what /proc says an fd is)."""
    value = record.get(key)
    if value is None and key not in record:
        return None
    if type(value) is not dict:
        return f"'{key}' is a {_kind(value)}, not a map"
    for k, v in value.items():
        if not _is_text(k):
            return f"'{key}' has a key that is a {_kind(k)}, not a string"
        if not (v is None or type(v) in (bool, float) or _is_int(v, _REG) or _is_text(v)):
            return f"'{key}.{k}' is a {_kind(v)}"
    return None


def _buffers_problem(record: Record, key: str, value_type: type) -> str | None:
    """``in``/``out`` (names to bytes) and ``faults`` (names to reasons)."""
    if key not in record:
        return None
    value = record[key]
    if type(value) is not dict:
        return f"'{key}' is a {_kind(value)}, not a map"
    for k, v in value.items():
        if not _is_text(k):
            return f"'{key}' has a key that is a {_kind(k)}, not a string"
        if type(v) is not value_type or (value_type is str and not _is_text(v)):
            return f"'{key}.{k}' is a {_kind(v)}, not {value_type.__name__}"
    return None


def _bytes_problem(record: Record, key: str) -> str | None:
    if key not in record:
        return None
    value = record[key]
    if type(value) is not bytes:
        return f"'{key}' is a {_kind(value)}, not bytes"
    if len(value) > _MAX_ATTR:
        return f"'{key}' of {len(value)} bytes (at most {_MAX_ATTR})"
    return None


def call_record_problem(record: Record) -> str | None:
    """Why a call record does not have the shape of the format, or None if it does."""
    if type(record) is not dict:
        return f"a {_kind(record)}, not a map"
    problem = _text_problem(record, "syscall", required=True)
    if problem:
        return problem
    for key, bounds, nullable in _CALL_INTS:
        # Every record is checked on each read: a well-formed value passes here without
        # a call, _int_problem words what is wrong otherwise.
        value = record.get(key)
        if type(value) is int and bounds[0] <= value <= bounds[1]:
            continue
        problem = _int_problem(record, key, bounds, nullable=nullable)
        if problem:
            return problem
    problem = _int_problem(record, "cmd", _CMD, required=record["syscall"] == "bpf")
    if problem:
        return problem if record["syscall"] != "bpf" or "cmd" in record \
            else "a bpf() record without a command"
    if "args" in record:
        args = record["args"]
        if type(args) is not list:
            return f"'args' is a {_kind(args)}, not a list"
        if len(args) > _MAX_ARGS:
            return f"{len(args)} syscall arguments (at most {_MAX_ARGS})"
        if not all(_is_int(a, _REG) for a in args):
            return "syscall arguments that are not 64-bit integers"
    for key in ("attr", "attr_out", "common"):
        if key in record:
            problem = _bytes_problem(record, key)
            if problem:
                return problem
    for key in ("in", "out"):
        if key in record:
            problem = _buffers_problem(record, key, bytes)
            if problem:
                return problem
    # The optional keys in the same order, each checked only when present.
    for key, check in _CALL_OPTIONAL:
        if key in record:
            problem = check(record)
            if problem:
                return problem
    return None


# record --stack's frame keys and their types (docs/trace-format.md, "stack").
_FRAME_INTS = ("pc", "offset", "symbol_offset")
_FRAME_TEXTS = ("module", "symbol", "error")

_CALL_INTS = (("index", _S64, False), ("pid", _PID, False), ("tid", _PID, False),
              ("size", _U32, False), ("ret", _S64, True), ("errno", _C_INT, True),
              ("ts", _U64, False), ("dur", _U64, False))


def _stack_problem(record: Record) -> str | None:
    """``stack``: a list of frames, innermost first, each a map with at least ``pc``;
    keys other than the documented ones are ignored (room for later additions)."""
    if "stack" not in record:
        return None
    stack = record["stack"]
    if type(stack) is not list:
        return f"'stack' is a {_kind(stack)}, not a list"
    for number, frame in enumerate(stack):
        if type(frame) is not dict:
            return f"'stack' frame {number} is a {_kind(frame)}, not a map"
        if not _is_int(frame.get("pc"), _U64):
            return f"'stack' frame {number} has no 64-bit 'pc'"
        for key in _FRAME_INTS:
            if key in frame and not _is_int(frame[key], _REG):
                return f"'stack' frame {number}: '{key}' is not a 64-bit integer"
        for key in _FRAME_TEXTS:
            if key in frame and type(frame[key]) is not str:
                return f"'stack' frame {number}: '{key}' is a {_kind(frame[key])}, not a string"
        for key in ("exported", "frame_pointer"):
            if key in frame and type(frame[key]) is not bool:
                return f"'stack' frame {number}: '{key}' is not a boolean"
        inlined = frame.get("inlined", [])
        if type(inlined) is not list or not all(type(n) is str for n in inlined):
            return f"'stack' frame {number}: 'inlined' is not a list of strings"
    return None


def _process_problem(record: Record) -> str | None:
    problem = (_int_problem(record, "pid", _PID, required=True)
               or _text_problem(record, "exe", nullable=True)
               or _text_problem(record, "self_exe", nullable=True))
    if problem:
        return problem
    cmdline = record.get("cmdline")
    if cmdline is not None and not (type(cmdline) is list and all(map(_is_text, cmdline))):
        return "'cmdline' is not a list of strings"
    libbpf = record.get("libbpf")
    if libbpf is not None:
        if type(libbpf) is not dict:
            return f"'libbpf' is a {_kind(libbpf)}, not a map"
        for key in ("path", "realpath", "version"):
            problem = _text_problem(libbpf, key, nullable=True)
            if problem:
                return f"libbpf: {problem}"
    return None


def _exit_problem(record: Record) -> str | None:
    return (_int_problem(record, "pid", _PID, required=True)
            or _int_problem(record, "code", _C_INT, nullable=True)
            or _text_problem(record, "signal", nullable=True)
            or _int_problem(record, "ts", _U64))


def record_problem(record: Any) -> str | None:
    """Why an object read after the header is not a record of the format, or None."""
    if type(record) is not dict:
        return f"a {_kind(record)}, not a map"
    for key in record:
        if type(key) is not str:
            return f"a key that is a {_kind(key)}, not a string"
    kind = record.get("type")
    if not _is_text(kind):
        return "no record type" if kind is None else f"a record type that is a {_kind(kind)}"
    if kind == CALL:
        return call_record_problem(record)
    if kind == PROCESS:
        return _process_problem(record)
    if kind == EXIT:
        return _exit_problem(record)
    return None  # a type of a later minor addition: readers skip what they do not know


def header_problem(header: Any) -> str | None:
    """Why the header (already known to name the format and version) is not of its shape."""
    for key in header:
        if type(key) is not str:
            return f"a key that is a {_kind(key)}, not a string"
    for key in ("bpfreplay", "recorder", "kernel", "machine", "comment"):
        problem = _text_problem(header, key, nullable=True)
        if problem:
            return problem
    argv = header.get("argv")
    if argv is not None and not (type(argv) is list and all(map(_is_text, argv))):
        return f"'argv' is a {_kind(argv)}, not a list of strings" if type(argv) is not list \
            else "'argv' is not a list of strings"
    started = header.get("start_time")
    if started is not None:
        if type(started) not in (int, float):
            return f"'start_time' is a {_kind(started)}, not a number"
        if not (math.isfinite(started) and 0 <= started < 1e11):
            return f"'start_time' {started} is not a time"
    problem = _int_problem(header, "possible_cpus", (1, _MAX_CPUS))
    if problem:
        return problem
    return _int_problem(header, "attached_pid", _PID)


_CALL_OPTIONAL: tuple[tuple[str, Any], ...] = (
    ("faults", lambda record: _buffers_problem(record, "faults", str)),
    ("attr_fault", lambda record: _text_problem(record, "attr_fault")),
    ("tracepoint", lambda record: _text_problem(record, "tracepoint")),
    ("pmu", lambda record: _text_problem(record, "pmu")),
    ("stack", _stack_problem),
    ("object", lambda record: _scalar_map_problem(record, "object")),
    ("replaced", lambda record: _scalar_map_problem(record, "replaced")),
)
