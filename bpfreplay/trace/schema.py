"""Names shared by the trace writer and reader (the schema is in docs/trace-format.md)."""

FORMAT_NAME = "bpfreplay-trace"
FORMAT_VERSION = 1

# Record types that follow the header.
CALL = "call"        # one recorded syscall
PROCESS = "process"  # first sight of a traced process: exe, libbpf it mapped
EXIT = "exit"        # a traced process ended

# The types a call record's fields must have (docs/trace-format.md): readers check them
# once, so that decoders can trust a record's shape and only have to doubt its bytes.
_INT = (int,)
_CALL_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "index": _INT, "pid": _INT, "tid": _INT, "syscall": (str,), "cmd": _INT, "size": _INT,
    "attr": (bytes,), "attr_out": (bytes,), "common": (bytes,), "args": (list,),
    "ret": (int, type(None)), "errno": (int, type(None)), "in": (dict,), "out": (dict,),
    "object": (dict,), "faults": (dict,), "ts": _INT, "dur": _INT,
}


def call_record_problem(record: dict) -> str | None:
    """Why a call record does not have the shape of the format, or None if it does."""
    for key, types in _CALL_FIELD_TYPES.items():
        if key in record and not isinstance(record[key], types):
            return f"field '{key}' is a {type(record[key]).__name__}"
    if not isinstance(record.get("syscall"), str):
        return "no syscall name"
    if record["syscall"] == "bpf" and not isinstance(record.get("cmd"), int):
        return "a bpf() record without a command"
    args = record.get("args")
    if args is not None and not all(isinstance(a, int) for a in args):
        return "non-integer syscall arguments"
    for direction in ("in", "out"):
        buffers = record.get(direction) or {}
        if not all(isinstance(k, str) and isinstance(v, bytes) for k, v in buffers.items()):
            return f"'{direction}' buffers that are not named bytes"
    return None
