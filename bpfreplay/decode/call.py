"""What a recorded call means, for ``bpfreplay explain``: its fields by name, fds named
after the objects they refer to (``map_fd=4<map minimal_.bss>``), pointers replaced by
what they point at, its payloads decoded (instructions with source lines, BTF,
func/line info, logs, keys and values through the map's BTF), and which libbpf
feature probe and phase it belongs to.

Pure: call records in (a call refers to others through fds: ``explain_calls`` takes
them as a list, ``ExplainStream`` reads them twice and holds only the open fds), text
out. Decoding trouble in one payload is shown in place, never raised.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from bpfreplay.decode.attr_fields import DecodedAttr, FieldValue, c_string, flags_text
from bpfreplay.decode.fds import FdCursor, FdLife, FdTracker
from bpfreplay.decode.probes import CallLabel, StreamLabels, label_calls
from bpfreplay.decode.probes import Context as ProbeContext
from bpfreplay.errors import DecodeError
from bpfreplay.uapi import BPF_COMMON_ATTRS, cmd_name

Call = dict[str, Any]
_BTF_BLOBS_KEPT = 8  # BTF blobs fetched by id kept for the maps opened by id
_SHORT_INSNS = 3  # programs up to this long are shown whole on the one-line form
_SHORT_BYTES = 16


@dataclass
class Section:
    title: str
    lines: list[str]


@dataclass
class ExplainedCall:
    index: int
    record: Call
    label: CallLabel | None
    line: str  # the one-line, strace-like form
    fields: list[tuple[str, str]] = field(default_factory=list)  # every field, -v
    sections: list[Section] = field(default_factory=list)  # payloads decoded, -v
    objects: dict[str, str] = field(default_factory=dict)  # fd field -> object it names
    info: dict[str, str] = field(default_factory=dict)  # OBJ_GET_INFO_BY_FD: the answer
    shown: set[str] = field(default_factory=set)  # payloads a section already decoded
    verifier: Any = None  # VerifierStats of a PROG_LOAD whose log has them
    api: str | None = None  # record --stack: the libbpf API function behind the call

    @property
    def failed(self) -> bool:
        return self.record.get("ret") == -1 and bool(self.record.get("errno"))


def _cache_of(life: FdLife) -> dict[str, Any]:
    """What the decoder worked out about the object behind ``life`` (its name, its
    parsed BTF): kept on the fd's life, so it goes when the object can no longer be
    named."""
    root = life.root
    if root.data is None:
        root.data = {}
    return root.data


def _parse_btf(creator: Call) -> Any:
    from bpfreplay.decode.btf import parse_btf

    blob = (creator.get("in") or {}).get("btf")
    try:
        return parse_btf(blob) if blob else None
    except DecodeError:
        return None


class _DecodeContext:
    """What explaining one call needs to know about the others: the fds (``tracker``:
    an ``FdTracker`` over the whole list, or an ``FdCursor`` at the call), the label,
    the names of tracepoints and PMUs."""

    tracker: FdTracker | FdCursor

    def __init__(self, *, tracepoint_name: Callable[[int], str | None] | None = None,
                 pmu_name: Callable[[int], str | None] | None = None,
                 kernel_btf_name: Callable[[int], str | None] | None = None) -> None:
        # the name of a vmlinux BTF type by id (kfunc calls), where the kernel is known
        self.kernel_btf_name = kernel_btf_name
        from bpfreplay.decode.info import InfoNames

        self.tracepoint_name = tracepoint_name
        self.pmu_name = pmu_name
        # fds made by *_GET_FD_BY_ID, named after their info (filled before decoding)
        self.info_names = InfoNames()
        # BTF id -> the blob an OBJ_GET_INFO_BY_FD of a BTF fd returned (the last few)
        self.btf_blobs: dict[int, bytes] = {}
        self._parsed_by_id: tuple[int, bytes, Any] | None = None

    def btf_by_id(self, btf_id: int) -> Any:
        """The parsed BTF of kernel id ``btf_id`` if the trace fetched its blob (the last
        one asked for is kept parsed)."""
        blob = self.btf_blobs.get(btf_id)
        if blob is None:
            return None
        hit = self._parsed_by_id
        if hit is None or hit[0] != btf_id or hit[1] is not blob:
            from bpfreplay.decode.btf import parse_btf

            try:
                parsed = parse_btf(blob)
            except DecodeError:
                parsed = None
            self._parsed_by_id = hit = (btf_id, blob, parsed)
        return hit[2]

    def label_of(self, record: Call) -> CallLabel | None:
        raise NotImplementedError

    def problem_of(self, record: Call) -> str | None:
        """What is wrong with the shape of a record (None: nothing)."""
        raise NotImplementedError

    def object_of(self, life: FdLife | None) -> str | None:
        """``map minimal_.bss``, ``prog handle_tp``, ``btf``, ``perf_event ...``."""
        if life is None:
            return None
        cache = _cache_of(life)
        if "name" not in cache:
            creator = self.tracker.creator(life)
            cache["name"] = describe_object(creator, self) if creator is not None else None
        return cache["name"]

    def btf_of(self, life: FdLife | None) -> Any:
        """The parsed BTF of the BTF_LOAD that made ``life``'s object, or None."""
        creator = self.tracker.creator(life)
        if life is None or creator is None:
            return None
        cache = _cache_of(life)
        if "btf" not in cache:
            cache["btf"] = _parse_btf(creator)
        return cache["btf"]

    def btf(self, creator: Call | None) -> Any:
        """The parsed BTF a BTF_LOAD call loaded, or None (parsed once per fd made)."""
        if creator is None:
            return None
        life = self.tracker.created_by(creator.get("index", -1))
        if life is not None and self.tracker.creator(life) is creator:
            return self.btf_of(life)
        return _parse_btf(creator)


class TraceContext(_DecodeContext):
    """The whole list of calls in memory: the labels and fds of all of them."""

    def __init__(self, calls: Iterable[Call], *,
                 tracepoint_name: Callable[[int], str | None] | None = None,
                 pmu_name: Callable[[int], str | None] | None = None,
                 kernel_btf_name: Callable[[int], str | None] | None = None):
        from bpfreplay.trace.schema import call_record_problem

        super().__init__(tracepoint_name=tracepoint_name, pmu_name=pmu_name,
                         kernel_btf_name=kernel_btf_name)
        self.records = [c for c in calls if isinstance(c, dict)]
        self.malformed: dict[int, str] = {}  # id(record) -> what is wrong with it
        self.calls = []
        for c in self.records:
            problem = call_record_problem(c)
            if problem is None:
                self.calls.append(c)
            else:
                self.malformed[id(c)] = problem
        self.tracker = FdTracker(self.calls)
        for c in self.tracker.calls:
            self.info_names.see(c)
        self.labels = {label.index: label for label in label_calls(self.tracker.calls)}

    def label_of(self, record: Call) -> CallLabel | None:
        index = record.get("index", -1)
        return self.labels.get(index if isinstance(index, int) else -1)

    def problem_of(self, record: Call) -> str | None:
        return self.malformed.get(id(record))


def explain_calls(calls: Iterable[Call], *, sections: bool = True,
                  **context: Any) -> list[ExplainedCall]:
    """Every call explained, with the whole list in memory (``ExplainStream`` gives the
    same in the memory of the open fds)."""
    ctx = TraceContext(calls, **context)
    return [explain_call(c, ctx, sections=sections) for c in ctx.records]


class _StreamContext(_DecodeContext):
    """Pass 2 of ``ExplainStream``: the fds and the label of the call it is at."""

    def __init__(self, labels: StreamLabels, problems: dict[int, str],
                 info_names: Any = None, **context: Any):
        super().__init__(**context)
        if info_names is not None:
            self.info_names = info_names
        self.labels = labels
        self.problems = problems
        self.tracker = FdCursor()
        self.phase_ctx = ProbeContext(self.tracker)  # phases ask for the fds of the moment
        self._label: CallLabel | None = None
        self._problem: str | None = None

    def at(self, position: int, record: Call) -> None:
        self._problem = self.problems.get(position)
        self._label = None
        if self._problem is None:
            self.tracker.advance(record, record["index"])
            self._label = self.labels.label(record, self.phase_ctx)

    def label_of(self, record: Call) -> CallLabel | None:
        return self._label

    def problem_of(self, record: Call) -> str | None:
        return self._problem


class ExplainStream:
    """``explain_calls`` as a stream: two passes over the call records
    (``open_calls()`` is called twice and must give the same records: a trace file read
    twice). The first labels (``probes.scan_labels``), the second decodes each call with
    the fds open at that moment. Memory: the open fds and their objects' parsed BTF, the
    probe calls, and the calls still undecided, whatever the trace's length. Each
    ``ExplainedCall`` is made as the iteration reaches it.

    A trace the first pass cannot label alone (``NeedsWholeTrace``: call indices that do
    not increase) is explained from a list, as ``explain_calls`` does."""

    def __init__(self, open_calls: Callable[[], Iterable[Call]], *, sections: bool = True,
                 tracepoint_name: Callable[[int], str | None] | None = None,
                 pmu_name: Callable[[int], str | None] | None = None,
                 kernel_btf_name: Callable[[int], str | None] | None = None) -> None:
        self.open_calls = open_calls
        self.sections = sections
        self.context: dict[str, Any] = {"tracepoint_name": tracepoint_name,
                                        "pmu_name": pmu_name,
                                        "kernel_btf_name": kernel_btf_name}
        self.malformed = 0  # records malformed (known once the first pass has run)
        self.whole = False  # explained from a list after all

    def __iter__(self) -> Iterator[ExplainedCall]:
        from itertools import islice

        from bpfreplay.decode.info import InfoNames
        from bpfreplay.decode.probes import NeedsWholeTrace, scan_labels
        from bpfreplay.trace.schema import call_record_problem

        problems: dict[int, str] = {}
        count = 0
        info_names = InfoNames()

        def well_formed() -> Iterator[Call]:
            nonlocal count
            for position, record in enumerate(self._records()):
                count = position + 1
                problem = call_record_problem(record)
                if problem is None:
                    info_names.see(record)
                    yield record
                else:
                    problems[position] = problem

        try:
            labels = scan_labels(well_formed())
        except NeedsWholeTrace:
            self.whole = True
            ctx = TraceContext(self.open_calls(), **self.context)
            self.malformed = len(ctx.malformed)
            for record in ctx.records:
                yield explain_call(record, ctx, sections=self.sections)
            return
        self.malformed = len(problems)
        stream = _StreamContext(labels, problems, info_names, **self.context)
        for position, record in enumerate(islice(self._records(), count)):
            stream.at(position, record)
            yield explain_call(record, stream, sections=self.sections)

    def _records(self) -> Iterator[Call]:
        return (c for c in self.open_calls() if isinstance(c, dict))


def _tracepoint_lookup(record: Call, ctx: _DecodeContext | None,
                       ) -> Callable[[int], str | None] | None:
    """The recording's name of a tracepoint event (trace format 2: ``tracepoint``), else
    the context's look-up (this machine's tracefs, for a version-1 trace)."""
    name = record.get("tracepoint")
    if isinstance(name, str):
        return lambda _id: name
    return ctx.tracepoint_name if ctx is not None else None


def _pmu_lookup(record: Call, ctx: _DecodeContext | None,
                ) -> Callable[[int], str | None] | None:
    """The recording's name of a dynamic PMU type (format 2: ``pmu``), else the context's."""
    name = record.get("pmu")
    if isinstance(name, str):
        return lambda _type: name
    return ctx.pmu_name if ctx is not None else None


def describe_object(creator: Call, ctx: _DecodeContext | None = None) -> str:
    syscall = creator.get("syscall")
    if syscall == "perf_event_open":
        text = "perf_event"
        attr = creator.get("attr") or b""
        path = (creator.get("in") or {}).get("config1")
        if path is not None and len(attr) >= 72:
            offset = int.from_bytes(attr[64:72], "little")
            return f"{text} {path.decode(errors='replace')}:{offset:#x}"
        if len(attr) >= 16 and int.from_bytes(attr[:4], "little") == 2:
            lookup = _tracepoint_lookup(creator, ctx)
            name = lookup(int.from_bytes(attr[8:16], "little")) if lookup else None
            if name:
                text += " " + name
        return text
    if syscall == "memfd_create":
        return f"memfd {((creator.get('in') or {}).get('name') or b'').decode(errors='replace')}"
    if syscall != "bpf":
        return str((creator.get("object") or {}).get("kind", syscall))
    name = cmd_name(creator.get("cmd", -1)) or ""
    from bpfreplay.decode.fds import attr_field, attr_string

    if name == "BPF_MAP_CREATE":
        return "map " + (attr_string(creator, "map_name") or "(no name)")
    if name == "BPF_PROG_LOAD":
        return "prog " + (attr_string(creator, "prog_name") or "(no name)")
    if name == "BPF_BTF_LOAD":
        return "btf"
    if name in ("BPF_LINK_CREATE", "BPF_RAW_TRACEPOINT_OPEN"):
        return "link"
    if name in ("BPF_PROG_GET_FD_BY_ID", "BPF_MAP_GET_FD_BY_ID", "BPF_BTF_GET_FD_BY_ID",
                "BPF_LINK_GET_FD_BY_ID"):
        named = ctx.info_names.names.get(creator.get("index", -1)) if ctx is not None else None
        if named:
            return named
        kind = name.removeprefix("BPF_").removesuffix("_GET_FD_BY_ID").lower()
        return f"{kind} id {attr_field(creator, kind + '_id')}"
    if name == "BPF_OBJ_GET":
        return "pinned " + ((creator.get("in") or {}).get("pathname") or b"").decode(
            errors="replace")
    return name.removeprefix("BPF_").lower()


# ------------------------------------------------------------------ one call


def explain_call(record: Call, ctx: _DecodeContext, *, sections: bool = True) -> ExplainedCall:
    """One call explained; ``sections=False`` leaves out the -v sections (instructions,
    BTF, logs, keys and values), which only -v prints."""
    index = record.get("index", -1)
    index = index if isinstance(index, int) else -1
    problem = ctx.problem_of(record)
    if problem is not None:
        return ExplainedCall(index, record, None, f"<malformed record: {problem}>")
    explained = ExplainedCall(index, record, ctx.label_of(record), "")
    syscall = record.get("syscall")
    try:
        if syscall == "bpf":
            _explain_bpf(explained, ctx, sections)
        elif syscall == "perf_event_open":
            _explain_perf_event_open(explained, ctx)
        else:
            _explain_other(explained, ctx)
    except (DecodeError, ValueError, TypeError, KeyError, IndexError) as e:
        explained.line = f"{syscall}(...) /* undecodable record: {e} */"
    if "stack" in record:
        from bpfreplay.decode.stack import api_function, frame_lines

        explained.api = api_function(record["stack"])
        if sections:
            explained.sections.append(Section("call chain (record --stack)",
                                              frame_lines(record["stack"])))
    return explained


def _ret_text(record: Call, ctx: _DecodeContext) -> str:
    ret = record.get("ret")
    err = record.get("errno")
    if ret is None:
        return "?"
    if ret == -1 and err:
        from bpfreplay.uapi.errnos import errno_name, errno_text

        return f"-1 {errno_name(err)} ({errno_text(err)})"
    life = ctx.tracker.created_by(record.get("index", -1))
    if life is not None:
        return f"{ret}<{ctx.object_of(life)}>"
    return str(ret)


def _fd_text(value: int | str, what: str, explained: ExplainedCall, ctx: _DecodeContext) -> str:
    """``4<map minimal_.bss>`` when the trace saw the fd made, else the value as is."""
    life = ctx.tracker.reference(explained.index, what)
    if life is None:
        return str(value)
    name = ctx.object_of(life)
    explained.objects[what] = name or ""
    return f"{value}<{name}>"


def _explain_bpf(explained: ExplainedCall, ctx: _DecodeContext, sections: bool) -> None:
    record = explained.record
    cmd = record.get("cmd", 0)
    name = cmd_name(cmd) or str(cmd & ~BPF_COMMON_ATTRS)
    size = record.get("size")
    inputs = record.get("in") or {}
    outputs = record.get("out") or {}
    if "attr" not in record:
        explained.line = (f"bpf({name}, <unreadable: {record.get('attr_fault', '?')}>, "
                          f"{size}) = {_ret_text(record, ctx)}")
        return
    decoded = _decode_attr(cmd, record["attr"])
    shown: list[str] = []
    for f in decoded.fields:
        text = _field_text(f, explained, ctx, inputs, outputs, name)
        explained.fields.append((f.name, text))
        if not _is_empty(f):
            shown.append(f"{f.name}={text}")
    for note in _attr_notes(decoded):
        explained.fields.append(("note", note))
    common = ""
    if "common" in record:
        from bpfreplay.decode.attrs import decode_common_attr

        common_attr = decode_common_attr(record["common"])
        common = f", {_format_fields(common_attr)}, {len(record['common'])}"
    answer = _attr_answer(cmd, name, decoded, record)
    explained.line = (f"bpf({name}{' | BPF_COMMON_ATTRS' if cmd & BPF_COMMON_ATTRS else ''}, "
                      f"{{{', '.join(shown)}}}{answer}, {size}{common}) = "
                      f"{_ret_text(record, ctx)}")
    if name == "BPF_PROG_LOAD" and isinstance(outputs.get("log_buf"), bytes):
        from bpfreplay.decode.verifier_stats import verifier_stats

        explained.verifier = verifier_stats(outputs["log_buf"])
    if not sections:
        return
    if "attr_out" in record:
        after = _decode_attr(cmd, record["attr_out"], at_exit=True)
        before = {f.name: f.text for f in decoded.fields}
        changed = [f"{f.name}: {before.get(f.name)} -> {f.text}" for f in after.fields
                   if before.get(f.name) != f.text]
        if changed:
            explained.sections.append(Section("written back by the kernel", changed))
    _payload_sections(explained, ctx, name, decoded, inputs, outputs)


# Commands whose answer is in the attr the kernel wrote back (next_id, prog_cnt, count,
# fd_type ...): the one-line form shows it after the input, `` => {next_id=42}``. The
# loads' log_true_size is left to -v.
_ANSWERED_IN_ATTR = frozenset({
    "BPF_PROG_GET_NEXT_ID", "BPF_MAP_GET_NEXT_ID", "BPF_BTF_GET_NEXT_ID",
    "BPF_LINK_GET_NEXT_ID", "BPF_PROG_QUERY", "BPF_MAP_LOOKUP_BATCH",
    "BPF_MAP_LOOKUP_AND_DELETE_BATCH", "BPF_MAP_UPDATE_BATCH", "BPF_MAP_DELETE_BATCH",
    "BPF_TASK_FD_QUERY", "BPF_PROG_TEST_RUN", "BPF_PROG_RUN"})


def _attr_answer(cmd: int, name: str, decoded: DecodedAttr, record: Call) -> str:
    if name not in _ANSWERED_IN_ATTR or "attr_out" not in record or record.get("ret") == -1:
        return ""
    before = {f.name: f.text for f in decoded.fields}
    after = _decode_attr(cmd, record["attr_out"], at_exit=True)
    changed = [f"{f.name}={f.text}" for f in after.fields if before.get(f.name) != f.text]
    return f" => {{{', '.join(changed)}}}" if changed else ""


def _decode_attr(cmd: int, attr: bytes, *, at_exit: bool = False) -> DecodedAttr:
    """``decode_bpf_attr``, remembered for the last few attrs: a loop of updates or
    lookups passes the same bytes (same fd, same pointers) call after call."""
    if type(attr) is not bytes or len(attr) > 256:
        from bpfreplay.decode.attrs import decode_bpf_attr

        return decode_bpf_attr(cmd, attr, at_exit=at_exit)
    return _decode_attr_cached(cmd, attr, at_exit)


@lru_cache(maxsize=256)
def _decode_attr_cached(cmd: int, attr: bytes, at_exit: bool) -> DecodedAttr:
    from bpfreplay.decode.attrs import decode_bpf_attr

    return decode_bpf_attr(cmd, attr, at_exit=at_exit)


def _is_empty(f: FieldValue) -> bool:
    return f.raw in (0, b"") or (isinstance(f.raw, bytes) and not f.raw.strip(b"\0"))


def _attr_notes(decoded: DecodedAttr) -> list[str]:
    notes = list(getattr(decoded, "notes", ()))
    if decoded.cut:
        notes.append("cut by the size passed: " + ", ".join(decoded.cut))
    if decoded.trailing:
        notes.append(f"non-zero bytes past the known fields: {decoded.trailing.hex()}")
    return notes


def _format_fields(decoded: DecodedAttr) -> str:
    return "{" + ", ".join(f"{f.name}={f.text}" for f in decoded.fields) + "}"


def _field_text(f: FieldValue, explained: ExplainedCall, ctx: _DecodeContext,
                inputs: dict[str, bytes], outputs: dict[str, bytes], cmd: str) -> str:
    if f.role == "fd" and isinstance(f.raw, int) and f.raw:
        return _fd_text(f.text, f.name, explained, ctx)
    if f.role != "pointer" or not f.raw:
        return f.text
    if f.name == "info" and cmd == "BPF_OBJ_GET_INFO_BY_FD" and "info" in outputs:
        short = _info_short(explained, ctx, outputs)
        if short is not None:
            return short
    # A payload recorded both ways (an inout buffer): what the kernel wrote.
    data = outputs.get(f.name, inputs.get(f.name))
    if data is None:
        return f.text
    items = _array_items(f.name, data, inputs)
    if items is not None:
        from bpfreplay.decode.arrays import array_text

        return array_text(items)
    return _short_payload(f.name, data, explained, ctx, cmd)


def _info_kind(explained: ExplainedCall, ctx: _DecodeContext) -> str:
    from bpfreplay.decode.info import kind_of_creator

    return kind_of_creator(ctx.tracker.creator(ctx.tracker.reference(explained.index,
                                                                     "bpf_fd")))


def _info_short(explained: ExplainedCall, ctx: _DecodeContext,
                outputs: dict[str, bytes]) -> str | None:
    """OBJ_GET_INFO_BY_FD's answer on the one-line form (and in ``explained.info``)."""
    from bpfreplay.decode.info import decode_info, info_texts, short_info

    kind = _info_kind(explained, ctx)
    try:
        decoded = decode_info(kind, outputs["info"])
    except DecodeError:
        return None
    explained.info = info_texts(decoded, outputs)
    life = ctx.tracker.reference(explained.index, "bpf_fd")
    if kind == "map" and life is not None and decoded.value("btf_id"):
        _cache_of(life)["map_info"] = (decoded.value("btf_id"), decoded.value("btf_key_type_id"),
                                       decoded.value("btf_value_type_id"))
    elif kind == "btf" and outputs.get("info.btf") and \
            len(outputs["info.btf"]) == decoded.value("btf_size"):
        ctx.btf_blobs[decoded.value("id")] = outputs["info.btf"]
        while len(ctx.btf_blobs) > _BTF_BLOBS_KEPT:
            del ctx.btf_blobs[next(iter(ctx.btf_blobs))]
    return short_info(kind, decoded, outputs)


def _array_items(name: str, data: bytes, inputs: dict[str, bytes]) -> list[str] | None:
    """The elements of a pointer array field (strings or numbers), None for other fields."""
    string_arrays, u64_arrays = _array_fields()
    if name in string_arrays:
        from bpfreplay.decode.arrays import string_items
        from bpfreplay.uapi.pointers import STRINGS

        return string_items(data, inputs.get(name + STRINGS))
    if name in u64_arrays:
        from bpfreplay.decode.arrays import u64_items

        return u64_items(data)
    return None


@lru_cache(maxsize=1)
def _array_fields() -> tuple[frozenset[str], frozenset[str]]:
    # Asked for every pointer field of every call: the imports once, not per call.
    from bpfreplay.decode.arrays import U64_ARRAYS
    from bpfreplay.uapi.pointers import STRING_ARRAYS

    return frozenset(STRING_ARRAYS), frozenset(U64_ARRAYS)


def _short_payload(name: str, data: bytes, explained: ExplainedCall, ctx: _DecodeContext,
                   cmd: str) -> str:
    if name == "insns":
        from bpfreplay.decode.insn import decode_insns, format_insn

        try:
            insns = decode_insns(data)
        except DecodeError:
            return f"<{len(data)} bytes: not whole instructions>"
        if len(insns) <= _SHORT_INSNS:
            return "[" + "; ".join(format_insn(i).split(") ", 1)[-1] for i in insns) + "]"
        return f"[{len(data) // 8} insns]"
    if name in ("license", "name", "pathname", "uprobe_multi.path", "buf", "stream_buf"):
        return c_string(data + b"\0")
    if name == "btf":
        btf = ctx.btf(explained.record)
        types = len(btf.types) if btf is not None else 0
        count = "" if btf is None else f", {types} type{'' if types == 1 else 's'}"
        return f"<BTF {len(data)} bytes{count}>"
    if name in ("log_buf", "btf_log_buf"):
        lines = data.decode(errors="replace").count("\n")
        return f"<log: {lines} lines>"
    if name == "func_info":
        return f"<{len(data)} bytes of func info>"
    if name == "line_info":
        return f"<{len(data)} bytes of line info>"
    if len(data) <= _SHORT_BYTES:
        return "[" + data.hex(" ") + "]"
    return f"<{len(data)} bytes>"


# ------------------------------------------------------------------ -v sections


def _payload_sections(explained: ExplainedCall, ctx: _DecodeContext, cmd: str,
                      decoded: DecodedAttr, inputs: dict[str, bytes],
                      outputs: dict[str, bytes]) -> None:
    record = explained.record
    if "insns" in inputs:
        explained.sections.append(Section("instructions", _instructions(explained, ctx)))
    if "btf" in inputs:
        btf = ctx.btf(record)
        if btf is None:
            explained.sections.append(Section("BTF", ["<not a valid BTF blob>"]))
        else:
            from bpfreplay.decode.btf import dump_btf

            explained.sections.append(Section(f"BTF ({len(btf.types)} types)",
                                              list(dump_btf(btf))))
    for log_field, title in (("log_buf", "verifier log"), ("btf_log_buf", "BTF log"),
                             ("common.log_buf", "log")):
        if outputs.get(log_field):
            text = outputs[log_field].decode(errors="replace").rstrip("\n")
            explained.sections.append(Section(title, text.splitlines()))
    for key in ("key", "value", "next_key", "keys", "values", "in_batch", "out_batch"):
        for direction, source in (("in", inputs), ("out", outputs)):
            if key in source:
                data = source[key]
                lines = _batch_elements(explained, ctx, key, data) \
                    if key in ("keys", "values") else _map_data(explained, ctx, key, data)
                explained.sections.append(Section(
                    f"{key} ({'passed' if direction == 'in' else 'returned'}, "
                    f"{len(data)} bytes)", lines))
    if cmd == "BPF_OBJ_GET_INFO_BY_FD" and "info" in outputs:
        _info_sections(explained, ctx, inputs, outputs)
    for key in ("prog_ids", "link_ids", "prog_attach_flags", "link_attach_flags"):
        if key in outputs:  # PROG_QUERY's answer
            explained.shown.add(key)
            values = [v for (v,) in struct.iter_unpack("<I", outputs[key][:len(outputs[key])
                                                                        // 4 * 4])]
            texts = [str(v) for v in values] if key.endswith("_ids") else \
                [flags_text("flags:attach_flags", v) for v in values]
            explained.sections.append(Section(f"{key} (returned, {len(values)})",
                                              [", ".join(texts[i:i + 8])
                                               for i in range(0, len(texts), 8)] or ["(none)"]))
    for other in sorted(set(inputs) | set(outputs)):
        if other in ("insns", "btf", "license", "func_info", "line_info", "log_buf",
                     "btf_log_buf", "common.log_buf", "key", "value", "next_key", "keys",
                     "values", "in_batch", "out_batch") or other in explained.shown:
            continue
        # A payload recorded both ways (an inout buffer): what the kernel wrote.
        data = outputs.get(other, inputs.get(other, b""))
        title = other + (" (returned)" if other in outputs and other in inputs else "")
        items = _array_items(other, data, inputs) if other in inputs else None
        if other in ("buf", "stream_buf") and other in outputs:  # text the kernel wrote
            lines = data.decode(errors="replace").rstrip("\n").splitlines() or ["(empty)"]
            explained.sections.append(Section(other + " (returned)", lines))
        elif items is not None:
            explained.sections.append(Section(f"{other} ({len(items)} elements)", [
                f"[{i}] {item}" for i, item in enumerate(items)] or ["(empty)"]))
        elif not _followed_strings(other, inputs):
            explained.sections.append(Section(title, _hexdump(data)))


def _info_sections(explained: ExplainedCall, ctx: _DecodeContext, inputs: dict[str, bytes],
                   outputs: dict[str, bytes]) -> None:
    """The info struct the kernel wrote, field by field (``asked => answered`` where it
    changed what the caller passed), then each buffer its own pointers reached."""
    from bpfreplay.decode.info import (
        changed_fields,
        decode_info,
        info_buffer_lines,
        info_struct_of,
    )

    kind = _info_kind(explained, ctx)
    try:
        answered = decode_info(kind, outputs["info"])
    except DecodeError:
        return
    asked = decode_info(kind, inputs["info"]) if "info" in inputs else None
    lines = changed_fields(asked, answered, outputs) + [f"! {n}" for n in _attr_notes(answered)]
    explained.sections.append(Section(
        f"info (returned, {len(outputs['info'])} bytes): struct {info_struct_of(kind)}", lines))
    explained.shown.add("info")
    for key in sorted(k for k in outputs if k.startswith("info.")):
        explained.shown.add(key)
        data = outputs[key]
        lines = info_buffer_lines(kind, key[len("info."):], data, answered) or _hexdump(data)
        explained.sections.append(Section(f"{key} (returned, {len(data)} bytes)", lines))


def _followed_strings(name: str, inputs: dict[str, bytes]) -> bool:
    """``kprobe_multi.syms.strings``: shown with the array it follows."""
    from bpfreplay.uapi.pointers import STRING_ARRAYS, STRINGS

    return name.endswith(STRINGS) and name[:-len(STRINGS)] in STRING_ARRAYS \
        and name[:-len(STRINGS)] in inputs


def _instructions(explained: ExplainedCall, ctx: _DecodeContext) -> list[str]:
    """The kernel's disassembly of the program as loaded, with the function and source
    lines of its func/line info and a note after each special instruction (libbpf's
    poison, subprogram calls by name, the variable behind a map value: insn_notes)."""
    from bpfreplay.decode.insn import Resolver, before_load_imm64_text, decode_insns, format_insn
    from bpfreplay.decode.insn_notes import instruction_notes

    record = explained.record
    data = record["in"]["insns"]

    def imm64(insn: Any) -> str | None:
        text = before_load_imm64_text(insn)
        if text and text.startswith("map[fd:"):
            life = ctx.tracker.reference(explained.index, f"insns[{insn.index}]")
            name = ctx.object_of(life)
            if name:
                text += f"<{name}>"
        return text

    def kfunc(btf_id: int, off: int) -> str | None:
        # off 0: an id into vmlinux BTF, named as the verifier log names it
        namer = ctx.kernel_btf_name
        return namer(btf_id) if off == 0 and namer is not None else None

    try:
        insns = decode_insns(data)
    except DecodeError as e:
        return [f"<{e}>"]
    btf = ctx.btf_of(ctx.tracker.reference(explained.index, "prog_btf_fd"))
    funcs: list[Any] = []
    line_info: list[Any] = []
    problem = None
    if btf is not None:
        from bpfreplay.decode.lineinfo import program_info

        try:
            funcs, line_info = program_info(record, btf)
        except DecodeError as e:
            problem = f"<func/line info not decoded: {e}>"
    starts = {f.insn_off: f.name for f in funcs}
    notes = instruction_notes(insns, function_at=starts.get,
                              kfunc_named=lambda i: kfunc(i.imm, i.off) is not None,
                              map_value_at=lambda i: _map_variable(explained, ctx, i))
    resolver = Resolver(imm64_text=imm64, kfunc_name=kfunc)
    lines = []
    for insn in insns:
        text = f"{insn.index}: {format_insn(insn, resolver=resolver)}"
        note = notes.get(insn.index)
        lines.append(f"{text}  /* {note} */" if note else text)
    if btf is not None and problem is None:
        from bpfreplay.decode.lineinfo import annotate

        lines = annotate(lines, funcs, line_info)
    if problem is not None:
        lines.append(problem)
    return lines


def _map_variable(explained: ExplainedCall, ctx: _DecodeContext, insn: Any) -> str | None:
    """``variable seen+8`` for an ld_imm64 of a map value: the global variable the
    offset falls in, from the DATASEC its map was created with (.bss, .data, .rodata)."""
    from bpfreplay.decode.btf import Kind
    from bpfreplay.decode.fds import attr_field

    map_life = ctx.tracker.reference(explained.index, f"insns[{insn.index}]")
    creator = ctx.tracker.creator(map_life)
    btf = ctx.btf_of(ctx.tracker.creator_reference(map_life, "btf_fd"))
    if creator is None or btf is None:
        return None
    section = btf.type(attr_field(creator, "btf_value_type_id"))
    if section is None or section.kind != Kind.DATASEC:
        return None
    offset = insn.imm_hi
    for info in section.secinfos:
        if info.offset <= offset < info.offset + max(info.size, 1):
            var = btf.type(info.type)
            if var is None or not var.name:
                return None
            inside = offset - info.offset
            return f"variable {var.name}{f'+{inside}' if inside else ''} of {section.name}"
    return None


def _map_data(explained: ExplainedCall, ctx: _DecodeContext, key: str, data: bytes) -> list[str]:
    """A key or value through the BTF its map was created with, else hex."""
    from bpfreplay.decode.btf_value import format_btf_value
    from bpfreplay.decode.fds import attr_field

    lines = _hexdump(data)
    map_life = ctx.tracker.reference(explained.index, "map_fd")
    creator = ctx.tracker.creator(map_life)
    if creator is None:
        return lines
    type_field = "btf_key_type_id" if "key" in key or "batch" in key else "btf_value_type_id"
    type_id = attr_field(creator, type_field)
    btf = ctx.btf_of(ctx.tracker.creator_reference(map_life, "btf_fd"))
    if btf is None and map_life is not None and "map_info" in _cache_of(map_life):
        # A map opened by id: the BTF ids its info gave, the BTF the trace fetched by id
        btf_id, key_type, value_type = _cache_of(map_life)["map_info"]
        type_id = key_type if type_field == "btf_key_type_id" else value_type
        btf = ctx.btf_by_id(btf_id)
    if btf is None or not type_id:
        return lines
    try:
        size = btf.type_size(type_id)
        if size and len(data) >= size and key in ("key", "value", "next_key"):
            return [format_btf_value(btf, type_id, data[:size])] + lines
    except DecodeError:
        pass
    return lines


def _batch_elements(explained: ExplainedCall, ctx: _DecodeContext, key: str,
                    data: bytes) -> list[str]:
    """A batch's keys or values one element a line (through the map's BTF where the
    trace made the map): ``count`` elements, as the kernel wrote back how many it did."""
    from bpfreplay.decode.fds import attr_field

    record = explained.record
    done = attr_field({**record, "attr": record.get("attr_out", record.get("attr"))}, "count")
    if not done or len(data) % done:
        return _map_data(explained, ctx, key, data)
    size = len(data) // done
    one = "key" if key == "keys" else "value"
    lines = []
    for i in range(min(done, 256)):
        element = data[i * size:(i + 1) * size]
        shown = _map_data(explained, ctx, one, element)
        text = shown[0] if len(shown) > len(_hexdump(element)) else element.hex(" ")
        lines.append(f"[{i}] {text}")
    if done > 256:
        lines.append(f"... {done - 256} more")
    return lines


def _hexdump(data: bytes, width: int = 16) -> list[str]:
    out = []
    for offset in range(0, min(len(data), 4096), width):
        chunk = data[offset:offset + width]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        out.append(f"{offset:06x}  {chunk.hex(' '):<{width * 3}} {text}")
    if len(data) > 4096:
        out.append(f"... {len(data) - 4096} more bytes (--extract writes them all)")
    return out or ["(empty)"]


# ------------------------------------------------------------ other syscalls


def _explain_perf_event_open(explained: ExplainedCall, ctx: _DecodeContext) -> None:
    from bpfreplay.decode.perf import decode_perf_event_attr, perf_open_flags

    record = explained.record
    args = record.get("args", [0] * 6)
    attr = record.get("attr")
    if attr is None:
        attr_text = f"<unreadable: {record.get('attr_fault', '?')}>"
    else:
        decoded = decode_perf_event_attr(attr, tracepoint_name=_tracepoint_lookup(record, ctx),
                                         pmu_name=_pmu_lookup(record, ctx))
        # kprobe/uprobe PMUs: config1 points at a path or function name, captured
        path = (record.get("in") or {}).get("config1")
        shown = []
        for f in decoded.fields:
            text = c_string(path + b"\0") if path is not None and f.offset == 56 else f.text
            explained.fields.append((f.name, text))
            # type and config 0 mean something (PERF_TYPE_HARDWARE, PERF_COUNT_SW_CPU_CLOCK)
            if not _is_empty(f) or f.name in ("type", "config"):
                shown.append(f"{f.name}={text}")
        attr_text = "{" + ", ".join(shown) + "}"
    group = _s32(args[3])
    group_text = _fd_text(group, "group_fd", explained, ctx) if group >= 0 else str(group)
    explained.line = (f"perf_event_open({attr_text}, pid={_s32(args[1])}, cpu={_s32(args[2])}, "
                      f"group_fd={group_text}, flags={perf_open_flags(args[4])}) = "
                      f"{_ret_text(record, ctx)}")


def _explain_other(explained: ExplainedCall, ctx: _DecodeContext) -> None:
    record = explained.record
    syscall = record.get("syscall")
    args = record.get("args", [0] * 6)
    ret = _ret_text(record, ctx)
    first = _s32(args[0])
    if syscall == "close":
        explained.line = f"close({_fd_text(first, 'fd', explained, ctx)})"
        return
    if syscall == "ioctl":
        from bpfreplay.decode.perf import perf_ioctl_name

        request = args[1] & 0xFFFFFFFF
        name = perf_ioctl_name(request) or hex(request)
        arg = _fd_text(_s32(args[2]), "prog_fd", explained, ctx) \
            if "SET_BPF" in name else str(args[2])
        explained.line = f"ioctl({_fd_text(first, 'fd', explained, ctx)}, {name}, {arg}) = {ret}"
        return
    if syscall == "mmap":
        fd = _fd_text(_s32(args[4]), "fd", explained, ctx)
        ret_value = record.get("ret")
        ret = hex(ret_value & (1 << 64) - 1) if isinstance(ret_value, int) and \
            not record.get("errno") else ret
        explained.line = (f"mmap({hex(args[0]) if args[0] else 'NULL'}, {args[1]}, "
                          f"{_prot(args[2])}, {_mmap_flags(args[3])}, {fd}, {args[5]}) = {ret}")
        return
    if syscall == "munmap":
        explained.line = f"munmap({hex(args[0])}, {args[1]}) = {ret}"
        return
    if syscall in ("dup", "dup2", "dup3", "fcntl"):
        from bpfreplay.decode.syscall_args import dup3_flags, fcntl_command

        rest = {"dup": [], "dup2": [str(_s32(args[1]))],
                "dup3": [str(_s32(args[1])), dup3_flags(args[2] & 0xFFFFFFFF)],
                "fcntl": [fcntl_command(args[1] & 0xFFFFFFFF), str(_s32(args[2]))]}[syscall]
        explained.line = f"{syscall}({', '.join([_fd_text(first, 'fd', explained, ctx)] + rest)})" \
                         f" = {ret}"
        return
    if syscall == "memfd_create":
        from bpfreplay.decode.syscall_args import memfd_flags

        name = c_string(((record.get("in") or {}).get("name") or b"") + b"\0")
        explained.line = f"memfd_create({name}, {memfd_flags(args[1] & 0xFFFFFFFF)}) = {ret}"
        return
    if syscall == "setsockopt":
        _explain_setsockopt(explained, ctx, ret)
        return
    explained.line = f"{syscall}({', '.join(hex(a) for a in args[:5])}) = {ret}"


def _explain_setsockopt(explained: ExplainedCall, ctx: _DecodeContext, ret: str) -> None:
    """``setsockopt(7, SOL_SOCKET, SO_ATTACH_BPF, [5<prog handle>], 4)``, a classic
    program as strace shows it (the one-line form shortened, -v's section whole)."""
    from bpfreplay.decode import syscall_args as sa
    from bpfreplay.decode.cbpf import filter_insns

    record = explained.record
    args = record.get("args", [0] * 6)
    inputs = record.get("in") or {}
    level, option, optlen = args[1] & 0xFFFFFFFF, args[2] & 0xFFFFFFFF, args[4] & 0xFFFFFFFF
    optval, filter_data = inputs.get("optval"), inputs.get("filter")

    def text(whole: bool) -> str:
        return sa.optval_text(level, option, args[3], optlen, optval, filter_data,
                              lambda fd: _fd_text(fd, "optval", explained, ctx), whole=whole)

    explained.line = (f"setsockopt({_s32(args[0])}, {sa.socket_level(level)}, "
                      f"{sa.socket_option(level, option)}, {text(False)}, {optlen}) = {ret}")
    explained.fields.append(("optval", text(True)))
    if isinstance(filter_data, bytes) and filter_data:
        insns = filter_insns(filter_data)
        explained.sections.append(Section(f"classic BPF program ({len(insns)} instructions)",
                                          [f"{i}: {t}" for i, t in enumerate(insns)]))


def _s32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _prot(value: int) -> str:
    names = [n for bit, n in ((1, "PROT_READ"), (2, "PROT_WRITE"), (4, "PROT_EXEC"))
             if value & bit]
    return "|".join(names) or "PROT_NONE"


def _mmap_flags(value: int) -> str:
    names = [n for bit, n in ((1, "MAP_SHARED"), (2, "MAP_PRIVATE"), (0x10, "MAP_FIXED"),
                              (0x20, "MAP_ANONYMOUS")) if value & bit]
    rest = value & ~0x33
    return "|".join(names + ([hex(rest)] if rest else [])) or "0"
