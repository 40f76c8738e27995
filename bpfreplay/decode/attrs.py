"""``union bpf_attr`` by name: every field of every command, as the kernel reads it.

    decode_bpf_attr(5, attr_bytes) -> DecodedAttr("prog_load", 128, (FieldValue(...), ...))
    format_attr(decoded) -> "{prog_type=BPF_PROG_TYPE_TRACEPOINT, insn_cnt=13, ...}"

The layouts are the kernel's (bpfreplay.uapi, from BTF plus the newer uapi); this module
adds what a layout cannot say: which names each field's value takes (``SPECS``), and
which member of a union this call means (``_view``), chosen from the command and the
attr's own values as strace does: MAP_GET_NEXT_KEY's ``next_key`` and the lookups'
``value``, link_create's inner union by attach type, target_fd or target_ifindex,
relative_fd or relative_id by BPF_F_ID ...

Rules: decode only up to the size the caller passed (the kernel zero-fills the rest);
a zero that means "not set" prints as 0, not as the enum's first name
(expected_attach_type=0 is not BPF_CGROUP_INET_INGRESS unless the program is a
cgroup_skb one); unknown values print as numbers; flags as NAME|NAME|0xrest.
Pure and total: any bytes decode; only a non-bytes argument raises DecodeError.
"""

from __future__ import annotations

from bpfreplay.decode.attr_fields import (
    BIT,
    COUNT,
    ENUM,
    FD,
    FLAGS,
    ID,
    INT,
    POINTER,
    SIZE,
    STRING,
    DecodedAttr,
    FieldValue,
    Spec,
    ViewField,
    as_bytes,
    decode_view,
    default_spec,
    format_attr,
    peek,
)
from bpfreplay.decode.perf import decode_perf_event_attr, perf_ioctl_name, perf_open_flags
from bpfreplay.uapi import BPF_COMMON_ATTRS, attr_layout, cmd_name, struct_layout
from bpfreplay.uapi.layout import StructLayout

__all__ = [
    "BIT",
    "DecodedAttr",
    "FieldValue",
    "attr_view",
    "decode_bpf_attr",
    "decode_common_attr",
    "decode_perf_event_attr",
    "format_attr",
    "perf_ioctl_name",
    "perf_open_flags",
]

_ATTACH = "enum:bpf_attach_type"
_S = Spec

# Field -> how to print it, per member of union bpf_attr. Fields not named here get
# default_spec (char[] strings, *_fd fds, numbers), so new kernel fields still decode.
SPECS: dict[str, dict[str, Spec]] = {
    "map_create": {
        "map_type": _S(ENUM, "enum:bpf_map_type"),
        "key_size": _S(SIZE), "value_size": _S(SIZE), "max_entries": _S(COUNT),
        "map_flags": _S(FLAGS, "enum:bpf_map_flags"),
        "inner_map_fd": _S(FD),
        "numa_node": _S(INT, style="numa"),
        "map_name": _S(STRING),
        "map_ifindex": _S(ID),
        "btf_fd": _S(FD),
        "btf_key_type_id": _S(ID), "btf_value_type_id": _S(ID),
        "btf_vmlinux_value_type_id": _S(ID),
        "map_extra": _S(INT),
        "value_type_btf_obj_fd": _S(FD), "map_token_fd": _S(FD),
        "excl_prog_hash": _S(POINTER), "excl_prog_hash_size": _S(SIZE),
    },
    "map_elem": {
        "map_fd": _S(FD), "key": _S(POINTER), "value": _S(POINTER),
        "next_key": _S(POINTER),
        "flags": _S(FLAGS, "flags:map_elem_flags"),  # BPF_MAP_UPDATE_ELEM: see _view
    },
    "batch": {
        "in_batch": _S(POINTER), "out_batch": _S(POINTER), "keys": _S(POINTER),
        "values": _S(POINTER), "count": _S(COUNT), "map_fd": _S(FD),
        "elem_flags": _S(FLAGS, "flags:map_elem_flags"),
        "flags": _S(INT, style="hex"),
    },
    "prog_load": {
        "prog_type": _S(ENUM, "enum:bpf_prog_type"),
        "insn_cnt": _S(COUNT), "insns": _S(POINTER), "license": _S(POINTER),
        "log_level": _S(INT), "log_size": _S(SIZE), "log_buf": _S(POINTER),
        "kern_version": _S(INT, style="kver"),
        "prog_flags": _S(FLAGS, "flags:prog_flags"),
        "prog_name": _S(STRING),
        "prog_ifindex": _S(ID),
        "expected_attach_type": _S(ENUM, _ATTACH, "unset0"),
        "prog_btf_fd": _S(FD),
        "func_info_rec_size": _S(SIZE), "func_info": _S(POINTER), "func_info_cnt": _S(COUNT),
        "line_info_rec_size": _S(SIZE), "line_info": _S(POINTER), "line_info_cnt": _S(COUNT),
        "attach_btf_id": _S(ID), "attach_prog_fd": _S(FD), "attach_btf_obj_fd": _S(FD),
        "core_relo_cnt": _S(COUNT), "fd_array": _S(POINTER), "core_relos": _S(POINTER),
        "core_relo_rec_size": _S(SIZE), "log_true_size": _S(SIZE),
        "prog_token_fd": _S(FD), "fd_array_cnt": _S(COUNT),
        "signature": _S(POINTER), "signature_size": _S(SIZE), "keyring_id": _S(INT),
    },
    "obj": {
        "pathname": _S(POINTER), "bpf_fd": _S(FD),
        "file_flags": _S(FLAGS, "flags:obj_file_flags"),
        "path_fd": _S(FD, style="at"),
    },
    "prog_attach": {
        "target_fd": _S(FD), "target_ifindex": _S(ID), "attach_bpf_fd": _S(FD),
        "attach_type": _S(ENUM, _ATTACH),  # 0 really is BPF_CGROUP_INET_INGRESS here
        "attach_flags": _S(FLAGS, "flags:attach_flags"),
        "replace_bpf_fd": _S(FD), "relative_fd": _S(FD), "relative_id": _S(ID),
        "expected_revision": _S(INT),
    },
    "test": {
        "prog_fd": _S(FD), "retval": _S(INT), "data_size_in": _S(SIZE),
        "data_size_out": _S(SIZE), "data_in": _S(POINTER), "data_out": _S(POINTER),
        "repeat": _S(COUNT), "duration": _S(INT), "ctx_size_in": _S(SIZE),
        "ctx_size_out": _S(SIZE), "ctx_in": _S(POINTER), "ctx_out": _S(POINTER),
        "flags": _S(FLAGS, "flags:test_run_flags"), "cpu": _S(INT), "batch_size": _S(COUNT),
    },
    "get_id": {
        "start_id": _S(ID), "prog_id": _S(ID), "map_id": _S(ID), "btf_id": _S(ID),
        "link_id": _S(ID), "next_id": _S(ID),
        "open_flags": _S(FLAGS, "flags:open_flags"),
        "fd_by_id_token_fd": _S(FD),
    },
    "info": {"bpf_fd": _S(FD), "info_len": _S(SIZE), "info": _S(POINTER)},
    "query": {
        "target_fd": _S(FD), "target_ifindex": _S(ID), "attach_type": _S(ENUM, _ATTACH),
        "query_flags": _S(FLAGS, "flags:query_flags"),
        "attach_flags": _S(FLAGS, "flags:attach_flags"),
        "prog_ids": _S(POINTER), "prog_cnt": _S(COUNT), "count": _S(COUNT),
        "prog_attach_flags": _S(POINTER), "link_ids": _S(POINTER),
        "link_attach_flags": _S(POINTER), "revision": _S(INT),
    },
    "raw_tracepoint": {"name": _S(POINTER), "prog_fd": _S(FD), "cookie": _S(INT, style="hex")},
    "btf_load": {
        "btf": _S(POINTER), "btf_log_buf": _S(POINTER), "btf_size": _S(SIZE),
        "btf_log_size": _S(SIZE), "btf_log_level": _S(INT), "btf_log_true_size": _S(SIZE),
        "btf_flags": _S(FLAGS, "flags:token_fd_flags"), "btf_token_fd": _S(FD),
    },
    "task_fd_query": {
        "pid": _S(INT), "fd": _S(FD), "flags": _S(INT), "buf_len": _S(SIZE),
        "buf": _S(POINTER), "prog_id": _S(ID),
        "fd_type": _S(ENUM, "enum:bpf_task_fd_type", "unset0"),  # an output: 0 until set
        "probe_offset": _S(INT, style="hex"), "probe_addr": _S(INT, style="hex"),
    },
    "link_create": {
        "prog_fd": _S(FD), "map_fd": _S(FD), "target_fd": _S(FD), "target_ifindex": _S(ID),
        "attach_type": _S(ENUM, _ATTACH),
        "flags": _S(INT, style="hex"),  # by attach type: see _view
        "target_btf_id": _S(ID), "iter_info": _S(POINTER), "iter_info_len": _S(SIZE),
        "perf_event.bpf_cookie": _S(INT, style="hex"),
        "kprobe_multi.flags": _S(FLAGS, "enum:bpf_kprobe_multi_flags"),
        "kprobe_multi.cnt": _S(COUNT), "kprobe_multi.syms": _S(POINTER),
        "kprobe_multi.addrs": _S(POINTER), "kprobe_multi.cookies": _S(POINTER),
        "tracing.target_btf_id": _S(ID), "tracing.cookie": _S(INT, style="hex"),
        "netfilter.pf": _S(ENUM, "values:nfproto"),
        "netfilter.hooknum": _S(ENUM, "values:nf_inet_hooks"),
        "netfilter.priority": _S(INT),
        "netfilter.flags": _S(FLAGS, "flags:netfilter_flags"),
        "uprobe_multi.path": _S(POINTER), "uprobe_multi.offsets": _S(POINTER),
        "uprobe_multi.ref_ctr_offsets": _S(POINTER), "uprobe_multi.cookies": _S(POINTER),
        "uprobe_multi.cnt": _S(COUNT),
        "uprobe_multi.flags": _S(FLAGS, "enum:bpf_uprobe_multi_flags"),
        "uprobe_multi.pid": _S(INT), "uprobe_multi.path_fd": _S(FD),
        "tracing_multi.ids": _S(POINTER), "tracing_multi.cookies": _S(POINTER),
        "tracing_multi.cnt": _S(COUNT),
        **{f"{member}.{name}": spec for member in ("tcx", "netkit", "cgroup")
           for name, spec in (("relative_fd", _S(FD)), ("relative_id", _S(ID)),
                              ("expected_revision", _S(INT)))},
    },
    "link_update": {
        "link_fd": _S(FD), "new_prog_fd": _S(FD), "new_map_fd": _S(FD),
        "flags": _S(FLAGS, "flags:attach_flags"), "old_prog_fd": _S(FD),
        "old_map_fd": _S(FD),
    },
    "link_detach": {"link_fd": _S(FD)},
    "enable_stats": {"type": _S(ENUM, "enum:bpf_stats_type")},
    "iter_create": {"link_fd": _S(FD), "flags": _S(INT, style="hex")},
    "prog_bind_map": {"prog_fd": _S(FD), "map_fd": _S(FD), "flags": _S(INT, style="hex")},
    "token_create": {"flags": _S(INT, style="hex"), "bpffs_fd": _S(FD)},
    "prog_stream_read": {
        "stream_buf": _S(POINTER), "stream_buf_len": _S(SIZE),
        "stream_id": _S(ENUM, "values:stream_id"), "prog_fd": _S(FD),
    },
    "prog_assoc_struct_ops": {"map_fd": _S(FD), "prog_fd": _S(FD), "flags": _S(INT, style="hex")},
}

COMMON_SPECS = {
    "log_buf": _S(POINTER), "log_size": _S(SIZE), "log_level": _S(INT),
    "log_true_size": _S(SIZE),
}

# Commands that read only the first fields of their member (the rest must be zero):
# BPF_*_LAST_FIELD in kernel/bpf/syscall.c, as far as it shows in the attr.
_FIELDS_OF = {
    "BPF_MAP_FREEZE": ("map_fd",),
    "BPF_MAP_DELETE_ELEM": ("map_fd", "key", "flags"),
    "BPF_MAP_GET_NEXT_KEY": ("map_fd", "key", "next_key"),
    "BPF_PROG_GET_NEXT_ID": ("start_id", "next_id", "open_flags"),
    "BPF_MAP_GET_NEXT_ID": ("start_id", "next_id", "open_flags"),
    "BPF_BTF_GET_NEXT_ID": ("start_id", "next_id", "open_flags"),
    "BPF_LINK_GET_NEXT_ID": ("start_id", "next_id", "open_flags"),
}
_ID_OF = {
    "BPF_PROG_GET_FD_BY_ID": "prog_id", "BPF_MAP_GET_FD_BY_ID": "map_id",
    "BPF_BTF_GET_FD_BY_ID": "btf_id", "BPF_LINK_GET_FD_BY_ID": "link_id",
}
_GET_ID_ALIASES = {"start_id", "prog_id", "map_id", "btf_id", "link_id"}

# Attach types whose target is a network device, not an fd.
_IFINDEX_TARGETS = {"BPF_XDP", "BPF_TCX_INGRESS", "BPF_TCX_EGRESS", "BPF_NETKIT_PRIMARY",
                    "BPF_NETKIT_PEER"}
_MPROG = {"BPF_TCX_INGRESS", "BPF_TCX_EGRESS", "BPF_NETKIT_PRIMARY", "BPF_NETKIT_PEER"}

# link_create's inner union: the member each attach type uses.
_LINK_MEMBER = {
    "BPF_PERF_EVENT": "perf_event.",
    "BPF_TRACE_KPROBE_MULTI": "kprobe_multi.", "BPF_TRACE_KPROBE_SESSION": "kprobe_multi.",
    "BPF_TRACE_UPROBE_MULTI": "uprobe_multi.", "BPF_TRACE_UPROBE_SESSION": "uprobe_multi.",
    "BPF_TRACE_ITER": "iter_info",
    "BPF_TRACE_FENTRY": "tracing.", "BPF_TRACE_FEXIT": "tracing.",
    "BPF_MODIFY_RETURN": "tracing.", "BPF_LSM_MAC": "tracing.", "BPF_TRACE_RAW_TP": "tracing.",
    "BPF_TRACE_FSESSION": "tracing.",
    "BPF_TRACE_FENTRY_MULTI": "tracing_multi.", "BPF_TRACE_FEXIT_MULTI": "tracing_multi.",
    "BPF_TRACE_FSESSION_MULTI": "tracing_multi.",
    "BPF_NETFILTER": "netfilter.",
    "BPF_TCX_INGRESS": "tcx.", "BPF_TCX_EGRESS": "tcx.",
    "BPF_NETKIT_PRIMARY": "netkit.", "BPF_NETKIT_PEER": "netkit.",
}
_RELATIVE_FLAGS = (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5)  # REPLACE BEFORE AFTER ID
_BPF_F_ID = 1 << 5

# Program types whose attach_prog_fd/attach_btf_obj_fd names a module's BTF object (the
# kernel tries a program first, then a BTF object; libbpf passes the BTF object for
# these when attaching to a module function).
_BTF_OBJ_PROG_TYPES = {"BPF_PROG_TYPE_TRACING", "BPF_PROG_TYPE_LSM",
                       "BPF_PROG_TYPE_STRUCT_OPS"}


def _attach_name(value: int) -> str:
    return _name("enum:bpf_attach_type", value)


def _name(table: str, value: int) -> str:
    from bpfreplay.decode.attr_fields import value_name

    return value_name(table, value) or str(value)


def _is_cgroup(attach: str) -> bool:
    return attach.startswith("BPF_CGROUP_") or attach == "BPF_LSM_CGROUP"


def _link_create_view(layout: StructLayout, data: bytes) -> tuple[set[str], dict[str, Spec]]:
    """Fields to leave out and Specs to change for a BPF_LINK_CREATE attr."""
    attach = _attach_name(peek(data, layout.field("attach_type")))
    flags = peek(data, layout.field("flags"))
    drop = {"prog_fd" if attach == "BPF_STRUCT_OPS" else "map_fd",
            "target_fd" if attach in _IFINDEX_TARGETS else "target_ifindex"}
    member = _LINK_MEMBER.get(attach)
    if member is None and _is_cgroup(attach):
        # attach type 0 is also what a freplace (BPF_PROG_TYPE_EXT) link passes, with
        # its target_btf_id: strace's reading. cgroup links use relative_* with flags.
        if attach == "BPF_CGROUP_INET_INGRESS" and not flags & _RELATIVE_FLAGS:
            member = "target_btf_id"
        else:
            member = "cgroup."
    for f in layout.fields:
        if f.offset < 16:
            continue
        keep = member is not None and (
            f.name.startswith(member) if member.endswith(".")
            else f.name == member or (member == "iter_info" and f.name == "iter_info_len"))
        if not keep:
            drop.add(f.name)
    if member in ("tcx.", "netkit.", "cgroup."):
        drop.add(member + ("relative_fd" if flags & _BPF_F_ID else "relative_id"))
    specs: dict[str, Spec] = {}
    if attach == "BPF_XDP":
        specs["flags"] = Spec(FLAGS, "flags:xdp_flags")
    elif attach in _MPROG or _is_cgroup(attach):
        specs["flags"] = Spec(FLAGS, "flags:attach_flags")
    return drop, specs


def _view(name: str, group: str, layout: StructLayout, data: bytes, at_exit: bool,
          ) -> list[ViewField]:
    """The fields command ``name`` reads, union aliases chosen, each with its Spec."""
    field = layout.field
    drop: set[str] = set()
    specs: dict[str, Spec] = {}
    keep_only: tuple[str, ...] | None = _FIELDS_OF.get(name)
    if group == "map_elem":
        drop.add("next_key" if name != "BPF_MAP_GET_NEXT_KEY" else "value")
        if name == "BPF_MAP_UPDATE_ELEM":
            specs["flags"] = Spec(FLAGS, "flags:map_elem_flags", "update")
    elif group == "batch" and name == "BPF_MAP_UPDATE_BATCH":
        specs["elem_flags"] = Spec(FLAGS, "flags:map_elem_flags", "update")
    elif group == "get_id":
        if keep_only is None:  # the FD_BY_ID commands: their own id name
            drop |= _GET_ID_ALIASES - {_ID_OF.get(name, "start_id")}
    elif group == "prog_load":
        prog_type = _name("enum:bpf_prog_type", peek(data, field("prog_type")))
        btf_obj = (prog_type in _BTF_OBJ_PROG_TYPES and peek(data, field("attach_prog_fd")))
        drop.add("attach_prog_fd" if btf_obj else "attach_btf_obj_fd")
        if prog_type == "BPF_PROG_TYPE_CGROUP_SKB":
            # cgroup_skb/ingress really is expected_attach_type 0.
            specs["expected_attach_type"] = Spec(ENUM, _ATTACH)
    elif group in ("prog_attach", "query"):
        attach = _attach_name(peek(data, field("attach_type")))
        drop.add("target_fd" if attach in _MPROG else "target_ifindex")
        if group == "query":
            drop.add("prog_cnt" if attach in _MPROG else "count")
        else:
            flags = peek(data, field("attach_flags"))
            drop.add("relative_fd" if flags & _BPF_F_ID else "relative_id")
    elif group == "link_create":
        drop, specs = _link_create_view(layout, data)
    elif group == "link_update":
        drop |= {"new_map_fd", "old_map_fd"}  # a struct_ops link's: same bytes
    elif group == "task_fd_query" and at_exit:
        specs["fd_type"] = Spec(ENUM, "enum:bpf_task_fd_type")
    table = SPECS.get(group, {})
    view = []
    for f in layout.fields:
        if f.name in drop or (keep_only is not None and f.name not in keep_only):
            continue
        view.append(ViewField(f, specs.get(f.name) or table.get(f.name) or default_spec(f)))
    return view


def attr_view(cmd: int, attr: bytes, *, at_exit: bool = False) -> list[ViewField] | None:
    """The fields command ``cmd`` reads from ``attr``, with the union member this call
    means (link_create's by attach type, ...), each with its Spec; None for a command
    no table knows. What decode_bpf_attr decodes, without the text (the compare's view)."""
    name = cmd_name(cmd)
    layout = attr_layout(cmd)
    if name is None or layout is None:
        return None
    return _view(name, layout.name, layout, as_bytes(attr, "a bpf() attr"), at_exit)


def decode_bpf_attr(cmd: int, attr: bytes, *, at_exit: bool = False) -> DecodedAttr:
    """Every field of a bpf() attr by name. ``cmd`` as passed (BPF_COMMON_ATTRS may be
    or-ed in); ``attr`` the bytes the caller passed (its size argument is ``len(attr)``);
    ``at_exit=True`` for the attr the kernel wrote back (outputs such as fd_type are set)."""
    data = as_bytes(attr, "a bpf() attr")
    name = cmd_name(cmd)
    layout = attr_layout(cmd)
    if name is None or layout is None:
        # A command newer than every table we have: show the bytes, drop nothing.
        number = cmd & ~BPF_COMMON_ATTRS
        return decode_view(f"bpf_cmd {number}", len(data), data, (),
                           (f"bpf() command {number} is unknown to this table",))
    group = layout.name  # the member of union bpf_attr: "prog_load", "link_create" ...
    return decode_view(group, len(data), data, _view(name, group, layout, data, at_exit))


def decode_common_attr(common: bytes) -> DecodedAttr:
    """The ``struct bpf_common_attr`` of bpf(cmd | BPF_COMMON_ATTRS, attr, size, common,
    common_size) (``common_size`` is ``len(common)``)."""
    data = as_bytes(common, "a bpf_common_attr")
    layout = struct_layout("bpf_common_attr")
    assert layout is not None  # newer.py always has it
    view = [ViewField(f, COMMON_SPECS.get(f.name) or default_spec(f)) for f in layout.fields]
    return decode_view("bpf_common_attr", len(data), data, view)
