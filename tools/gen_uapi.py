#!/usr/bin/env python3
"""Generate bpfreplay/uapi/_generated.py from the running kernel's BTF.

    .venv/bin/python tools/gen_uapi.py [--btf /sys/kernel/btf/vmlinux] [-o FILE]

What BTF can say is taken from it: the layout of every member of ``union bpf_attr``
(one per group of commands), of the structs the decoder reads (perf_event_attr,
bpf_prog_info, ...), and the kernel's enums (commands, map/prog/attach/link types,
helper ids, ...). What BTF cannot say is written here by hand and kept small: which
anonymous member of ``union bpf_attr`` serves which commands, and names for a few
anonymous enums. ``#define`` constants (flags) are in bpfreplay/uapi/defines.py.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bpfreplay.decode.btf import Btf, Kind, parse_btf  # noqa: E402

# The shapes of bpfreplay.uapi.layout's Field and StructLayout (equal as tuples), kept
# apart so that this script runs before _generated.py exists.
Field = tuple  # (name, offset, size, C type, bit offset, bit size)
StructLayout = tuple  # (name, size, fields)

OUTPUT = Path(__file__).resolve().parent.parent / "bpfreplay" / "uapi" / "_generated.py"

# Anonymous members of union bpf_attr, named after the commands they serve (recognised
# by their first field, as the uapi's comments say: /* anonymous struct used by
# BPF_MAP_CREATE command */ ...).
ANONYMOUS_GROUPS = {
    "map_type": "map_create",
    "map_fd": "map_elem",
    "prog_type": "prog_load",
    "pathname": "obj",
    "target_fd": "prog_attach",
    "start_id": "get_id",
    "btf": "btf_load",
}

# Which member of union bpf_attr each command reads.
COMMAND_GROUPS = {
    "BPF_MAP_CREATE": "map_create",
    "BPF_MAP_LOOKUP_ELEM": "map_elem",
    "BPF_MAP_UPDATE_ELEM": "map_elem",
    "BPF_MAP_DELETE_ELEM": "map_elem",
    "BPF_MAP_GET_NEXT_KEY": "map_elem",
    "BPF_MAP_LOOKUP_AND_DELETE_ELEM": "map_elem",
    "BPF_MAP_FREEZE": "map_elem",
    "BPF_PROG_LOAD": "prog_load",
    "BPF_OBJ_PIN": "obj",
    "BPF_OBJ_GET": "obj",
    "BPF_PROG_ATTACH": "prog_attach",
    "BPF_PROG_DETACH": "prog_attach",
    "BPF_PROG_TEST_RUN": "test",
    "BPF_PROG_RUN": "test",
    "BPF_PROG_GET_NEXT_ID": "get_id",
    "BPF_MAP_GET_NEXT_ID": "get_id",
    "BPF_BTF_GET_NEXT_ID": "get_id",
    "BPF_LINK_GET_NEXT_ID": "get_id",
    "BPF_PROG_GET_FD_BY_ID": "get_id",
    "BPF_MAP_GET_FD_BY_ID": "get_id",
    "BPF_BTF_GET_FD_BY_ID": "get_id",
    "BPF_LINK_GET_FD_BY_ID": "get_id",
    "BPF_OBJ_GET_INFO_BY_FD": "info",
    "BPF_PROG_QUERY": "query",
    "BPF_RAW_TRACEPOINT_OPEN": "raw_tracepoint",
    "BPF_BTF_LOAD": "btf_load",
    "BPF_TASK_FD_QUERY": "task_fd_query",
    "BPF_MAP_LOOKUP_BATCH": "batch",
    "BPF_MAP_LOOKUP_AND_DELETE_BATCH": "batch",
    "BPF_MAP_UPDATE_BATCH": "batch",
    "BPF_MAP_DELETE_BATCH": "batch",
    "BPF_LINK_CREATE": "link_create",
    "BPF_LINK_UPDATE": "link_update",
    "BPF_LINK_DETACH": "link_detach",
    "BPF_ENABLE_STATS": "enable_stats",
    "BPF_ITER_CREATE": "iter_create",
    "BPF_PROG_BIND_MAP": "prog_bind_map",
    "BPF_TOKEN_CREATE": "token_create",
    "BPF_PROG_STREAM_READ_BY_FD": "prog_stream_read",
    "BPF_PROG_ASSOC_STRUCT_OPS": "prog_assoc_struct_ops",
}

# Structs the decoder and recorder read, besides union bpf_attr.
STRUCTS = (
    "perf_event_attr", "bpf_prog_info", "bpf_map_info", "bpf_btf_info", "bpf_link_info",
    "bpf_func_info", "bpf_line_info", "bpf_core_relo", "bpf_insn", "bpf_common_attr",
    "btf_header",
)

# Named enums, taken whole.
ENUMS = (
    "bpf_cmd", "bpf_map_type", "bpf_prog_type", "bpf_attach_type", "bpf_link_type",
    "bpf_func_id", "bpf_task_fd_type", "bpf_stats_type", "bpf_perf_event_type",
    "bpf_core_relo_kind", "bpf_cgroup_iter_order", "bpf_stream_id", "btf_func_linkage",
    "perf_type_id", "perf_sw_ids", "perf_hw_id", "perf_event_sample_format",
    "perf_event_read_format", "bpf_iter_task_type",
)
# Anonymous enums, named after one of their enumerators.
ANONYMOUS_ENUMS = {
    "BPF_F_NO_PREALLOC": "bpf_map_flags",
    "BPF_ANY": "bpf_map_update_flags",
    "BTF_KIND_UNKN": "btf_kind",
    "BPF_REG_0": "bpf_reg",
    "BPF_F_KPROBE_MULTI_RETURN": "bpf_kprobe_multi_flags",
    "BPF_F_UPROBE_MULTI_RETURN": "bpf_uprobe_multi_flags",
}


def c_type_name(btf: Btf, type_id: int) -> str:
    """A short C spelling of a type: typedef and int names as they are, arrays with [n]."""
    t = btf.type(type_id)
    if t is None:
        return "void"
    if t.kind == Kind.ARRAY:
        return f"{c_type_name(btf, t.elem_type)}[{t.nelems}]"
    if t.kind == Kind.PTR:
        return c_type_name(btf, t.ref) + " *"
    if t.kind in (Kind.CONST, Kind.VOLATILE):
        return c_type_name(btf, t.ref)
    if t.kind in (Kind.STRUCT, Kind.UNION):
        return f"{t.kind_name.lower()} {t.name or '(anon)'}"
    if t.kind in (Kind.ENUM, Kind.ENUM64):
        return f"enum {t.name or '(anon)'}"
    return t.name or t.kind_name.lower()


def flatten(btf: Btf, type_id: int, bit_base: int, prefix: str) -> list[Field]:
    """The leaf fields of a struct or union, anonymous members flattened and named nested
    structs dotted, at absolute byte offsets."""
    outer = btf.skip_modifiers(type_id)
    assert outer is not None and outer.kind in (Kind.STRUCT, Kind.UNION)
    fields: list[Field] = []
    for m in outer.members:
        inner = btf.skip_modifiers(m.type)
        bits = bit_base + m.bit_offset
        if inner is not None and inner.kind in (Kind.STRUCT, Kind.UNION):
            fields += flatten(btf, m.type, bits, prefix + (m.name + "." if m.name else ""))
            continue
        size = btf.type_size(m.type)
        name = prefix + m.name
        if m.bitfield_size:
            unit_bits = size * 8
            unit_start = bits - bits % unit_bits
            fields.append((name, unit_start // 8, size, c_type_name(btf, m.type),
                           bits - unit_start, m.bitfield_size))
        else:
            fields.append((name, bits // 8, size, c_type_name(btf, m.type), 0, 0))
    return fields


def attr_layouts(btf: Btf) -> dict[str, StructLayout]:
    """Group name -> (group, size, fields) of each member of union bpf_attr."""
    attr = btf.by_name("bpf_attr", Kind.UNION)
    if attr is None:
        raise SystemExit("gen_uapi: the BTF has no union bpf_attr")
    layouts = {}
    for m in attr.members:
        fields = flatten(btf, m.type, m.bit_offset, "")
        group = m.name or ANONYMOUS_GROUPS.get(fields[0][0])
        if group is None:
            raise SystemExit(f"gen_uapi: union bpf_attr has an anonymous member starting "
                             f"with {fields[0][0]!r}: name it in ANONYMOUS_GROUPS")
        layouts[group] = (group, btf.type_size(m.type), tuple(fields))
    return layouts


def struct_layouts(btf: Btf) -> dict[str, StructLayout]:
    layouts = {}
    for name in STRUCTS:
        t = btf.by_name(name, Kind.STRUCT)
        if t is not None:
            layouts[name] = (name, t.size, tuple(flatten(btf, t.id, 0, "")))
    return layouts


def enums(btf: Btf) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    wanted = set(ENUMS)
    for t in btf.types:
        if t.kind not in (Kind.ENUM, Kind.ENUM64):
            continue
        name = t.name if t.name in wanted else None
        if not t.name and t.enumerators:
            name = ANONYMOUS_ENUMS.get(t.enumerators[0].name)
        if name and name not in out:
            out[name] = {e.name: e.value for e in t.enumerators}
    return out


def render(btf_path: str, btf: Btf) -> str:
    attrs = attr_layouts(btf)
    structs = struct_layouts(btf)
    all_enums = enums(btf)
    lines = [
        f'"""GENERATED by tools/gen_uapi.py from {btf_path} of Linux {platform.release()}.',
        "",
        "Do not edit: run `.venv/bin/python tools/gen_uapi.py` to regenerate. Layouts are",
        "(name, size, fields); a field is (name, offset, size, C type, bit offset, bit size).",
        '"""',
        "",
        "from bpfreplay.uapi.layout import Field as F",
        "from bpfreplay.uapi.layout import StructLayout as S",
        "",
        f"KERNEL_RELEASE = {platform.release()!r}",
        "",
        "COMMAND_GROUPS = {",
    ]
    lines += [f"    {cmd!r}: {group!r}," for cmd, group in COMMAND_GROUPS.items()]
    lines.append("}")
    for title, layouts in (("ATTR_LAYOUTS", attrs), ("STRUCT_LAYOUTS", structs)):
        lines += ["", f"{title} = {{"]
        for name, layout in layouts.items():
            _, size, fields = layout
            lines.append(f"    {name!r}: S({name!r}, {size}, (")
            for f_name, offset, f_size, c_type, bit_offset, bit_size in fields:
                bits = f", {bit_offset}, {bit_size}" if bit_size else ""
                lines.append(f"        F({f_name!r}, {offset}, {f_size}, {c_type!r}{bits}),")
            lines.append("    )),")
        lines.append("}")
    lines += ["", "ENUMS = {"]
    for name, values in all_enums.items():
        lines.append(f"    {name!r}: {{")
        lines += [f"        {k!r}: {v}," for k, v in values.items()]
        lines.append("    },")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--btf", default="/sys/kernel/btf/vmlinux")
    parser.add_argument("-o", "--output", default=str(OUTPUT))
    args = parser.parse_args()
    with open(args.btf, "rb") as f:
        btf = parse_btf(f.read())
    text = render(args.btf, btf)
    tmp = args.output + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, args.output)
    print(f"gen_uapi: wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
