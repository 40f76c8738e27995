"""What the newest uapi has that this kernel's BTF lacks: a supplement, merged by
``bpfreplay.uapi`` so that calls made by newer loaders (or recorded on newer kernels)
still decode by name.

Read from include/uapi/linux/bpf.h and include/uapi/linux/perf_event.h of bpf-next as
synced into libbpf ("sync: latest libbpf changes from kernel", July 2026). The rule of
the merge: the running kernel's BTF (``_generated.py``) always wins; this table only
adds names, fields and layouts that the BTF does not have. When the generated table is
regenerated on a newer kernel, entries here become redundant and are ignored.
"""

from __future__ import annotations

from bpfreplay.uapi.layout import Field as F
from bpfreplay.uapi.layout import StructLayout as S

# Enumerators added after this kernel (value by name), per enum.
ENUMS: dict[str, dict[str, int]] = {
    "bpf_cmd": {
        "BPF_PROG_ASSOC_STRUCT_OPS": 38,
    },
    "bpf_map_type": {
        "BPF_MAP_TYPE_INSN_ARRAY": 34,
        "BPF_MAP_TYPE_RHASH": 35,
    },
    "bpf_attach_type": {
        "BPF_TRACE_FSESSION": 58,
        "BPF_TRACE_FENTRY_MULTI": 59,
        "BPF_TRACE_FEXIT_MULTI": 60,
        "BPF_TRACE_FSESSION_MULTI": 61,
    },
    "bpf_link_type": {
        "BPF_LINK_TYPE_TRACING_MULTI": 15,
    },
    "bpf_cgroup_iter_order": {
        "BPF_CGROUP_ITER_CHILDREN": 5,
    },
    # The anonymous "flags for BPF_MAP_CREATE command" enum.
    "bpf_map_flags": {
        "BPF_F_RB_OVERWRITE": 1 << 19,
    },
    # The anonymous "flags for BPF_MAP_UPDATE_ELEM command" enum.
    "bpf_map_update_flags": {
        "BPF_F_CPU": 8,
        "BPF_F_ALL_CPUS": 16,
    },
    "bpf_uprobe_multi_flags": {
        "BPF_F_UPROBE_MULTI_PATH_FD": 1 << 1,
    },
}

# Members of union bpf_attr that this kernel does not have at all.
ATTR_LAYOUTS: dict[str, S] = {
    "prog_assoc_struct_ops": S("prog_assoc_struct_ops", 12, (
        F("map_fd", 0, 4, "__u32"),
        F("prog_fd", 4, 4, "__u32"),
        F("flags", 8, 4, "__u32"),
    )),
}

# Fields appended to members this kernel has (offsets as in the newest header).
ATTR_FIELDS: dict[str, tuple[F, ...]] = {
    "link_create": (
        F("uprobe_multi.path_fd", 60, 4, "__u32"),
        F("tracing_multi.ids", 16, 8, "__u64"),
        F("tracing_multi.cookies", 24, 8, "__u64"),
        F("tracing_multi.cnt", 32, 4, "__u32"),
    ),
}

# Structs besides union bpf_attr: new ones whole ...
STRUCT_LAYOUTS: dict[str, S] = {
    # bpf(cmd | BPF_COMMON_ATTRS, attr, size, common, common_size). __aligned_u64 first,
    # so sizeof is 24 (libbpf passes sizeof(struct bpf_common_attr)); 20 bytes are fields.
    "bpf_common_attr": S("bpf_common_attr", 24, (
        F("log_buf", 0, 8, "__u64"),
        F("log_size", 8, 4, "__u32"),
        F("log_level", 12, 4, "__u32"),
        F("log_true_size", 16, 4, "__u32"),
    )),
}

# ... and fields appended to the ones this kernel has, with their grown sizes.
STRUCT_FIELDS: dict[str, tuple[F, ...]] = {
    "perf_event_attr": (
        F("defer_callchain", 40, 8, "__u64", 38, 1),
        F("defer_output", 40, 8, "__u64", 39, 1),
        F("config4", 136, 8, "__u64"),
    ),
}
STRUCT_SIZES: dict[str, int] = {
    "perf_event_attr": 144,  # PERF_ATTR_SIZE_VER9
}
