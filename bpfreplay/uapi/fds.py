"""Which ``bpf_attr`` fields hold file descriptors, per command.

BTF says they are ``__u32``; the uapi's comments say they are fds. Used to name the
object an fd refers to (explain) and to compare two traces whose fd numbers differ
(compare). A value only counts as an fd where the trace shows what made it: fields such
as ``target_fd`` also carry ifindexes or cgroup fds opened outside BPF.
"""

from __future__ import annotations

_ELEM = ("map_fd",)
_GET_ID = ("fd_by_id_token_fd",)

FD_FIELDS: dict[str, tuple[str, ...]] = {
    "BPF_MAP_CREATE": ("inner_map_fd", "btf_fd", "value_type_btf_obj_fd", "map_token_fd"),
    "BPF_MAP_LOOKUP_ELEM": _ELEM,
    "BPF_MAP_UPDATE_ELEM": _ELEM,
    "BPF_MAP_DELETE_ELEM": _ELEM,
    "BPF_MAP_GET_NEXT_KEY": _ELEM,
    "BPF_MAP_LOOKUP_AND_DELETE_ELEM": _ELEM,
    "BPF_MAP_FREEZE": _ELEM,
    "BPF_MAP_LOOKUP_BATCH": _ELEM,
    "BPF_MAP_LOOKUP_AND_DELETE_BATCH": _ELEM,
    "BPF_MAP_UPDATE_BATCH": _ELEM,
    "BPF_MAP_DELETE_BATCH": _ELEM,
    "BPF_PROG_LOAD": ("prog_btf_fd", "attach_prog_fd", "prog_token_fd"),
    "BPF_OBJ_PIN": ("bpf_fd", "path_fd"),
    "BPF_OBJ_GET": ("path_fd",),
    "BPF_PROG_ATTACH": ("target_fd", "attach_bpf_fd", "replace_bpf_fd", "relative_fd"),
    "BPF_PROG_DETACH": ("target_fd", "attach_bpf_fd", "relative_fd"),
    "BPF_PROG_TEST_RUN": ("prog_fd",),
    "BPF_PROG_RUN": ("prog_fd",),
    "BPF_PROG_GET_FD_BY_ID": _GET_ID,
    "BPF_MAP_GET_FD_BY_ID": _GET_ID,
    "BPF_BTF_GET_FD_BY_ID": _GET_ID,
    "BPF_LINK_GET_FD_BY_ID": _GET_ID,
    "BPF_OBJ_GET_INFO_BY_FD": ("bpf_fd",),
    "BPF_PROG_QUERY": ("target_fd",),
    "BPF_RAW_TRACEPOINT_OPEN": ("prog_fd",),
    "BPF_BTF_LOAD": ("btf_token_fd",),
    "BPF_LINK_CREATE": ("prog_fd", "target_fd", "tcx.relative_fd", "netkit.relative_fd",
                        "cgroup.relative_fd"),
    "BPF_LINK_UPDATE": ("link_fd", "new_prog_fd", "old_prog_fd"),
    "BPF_LINK_DETACH": ("link_fd",),
    "BPF_ITER_CREATE": ("link_fd",),
    "BPF_PROG_BIND_MAP": ("prog_fd", "map_fd"),
    "BPF_TOKEN_CREATE": ("bpffs_fd",),
    "BPF_PROG_STREAM_READ_BY_FD": ("prog_fd",),
}

# ld_imm64 source registers whose immediate is a map fd (BPF_PSEUDO_MAP_FD,
# BPF_PSEUDO_MAP_VALUE); the other pseudo forms index fd_array or name BTF ids.
PSEUDO_MAP_FD, PSEUDO_MAP_VALUE = 1, 2
# ld_imm64 of a ksym by BTF id (BPF_PSEUDO_BTF_ID): the second slot's imm is the fd of
# the module BTF that holds it (0: vmlinux).
PSEUDO_BTF_ID = 3
LD_IMM64 = 0x18

# perf ioctls whose argument is a BPF program fd.
PERF_EVENT_IOC_SET_BPF = 0x40042408
