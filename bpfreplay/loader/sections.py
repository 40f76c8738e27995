"""Program section names → program type, expected attach type and flags, as libbpf
1.1.2's ``section_defs[]`` table decides them.

Matching mirrors libbpf's sec_def_matches(): the first entry that matches wins, and a
table entry matches a section name

- exactly (``"socket"``, ``"xdp"``, ``"cgroup/dev"``);
- with a trailing ``+``, either exactly or followed by ``/...`` (``"tp+"`` matches
  ``tp`` and ``tp/syscalls/sys_enter_write`` but not ``tpx``);
- with a trailing ``/``, as a prefix (none in 1.1.2's table, kept for completeness).

A leading ``?`` in the ELF section name (libbpf: "don't autoload") is stripped by the
caller before matching.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import cache

from bpfreplay.uapi import enum_values


class SecFlags(enum.IntFlag):
    """libbpf's enum sec_def_flags."""

    NONE = 0
    EXP_ATTACH_OPT = 1  # expected_attach_type dropped on kernels that lack it
    ATTACHABLE = 2
    ATTACHABLE_OPT = 3
    ATTACH_BTF = 4  # target given as a BTF id (fentry/, lsm/, tp_btf/, iter/, ...)
    SLEEPABLE = 8  # BPF_F_SLEEPABLE at load
    XDP_FRAGS = 16  # BPF_F_XDP_HAS_FRAGS at load


# Load flags (union bpf_attr prog_flags) the sec-def flags turn into.
BPF_F_SLEEPABLE = 1 << 4
BPF_F_XDP_HAS_FRAGS = 1 << 5


@dataclass(frozen=True, slots=True)
class SecDef:
    """One entry of the table. ``attach`` names libbpf's auto-attach handler
    (``"tp"``, ``"raw_tp"``, ``"kprobe"``, ``"uprobe"``, ``"trace"``, ...) or is None
    when libbpf cannot auto-attach programs of this section."""

    prefix: str
    prog_type_name: str  # e.g. "TRACEPOINT" for BPF_PROG_TYPE_TRACEPOINT
    attach_type_name: str | None  # e.g. "BPF_XDP"; None for 0
    flags: SecFlags
    attach: str | None = None

    @property
    def prog_type(self) -> int:
        return _prog_types()["BPF_PROG_TYPE_" + self.prog_type_name]

    @property
    def expected_attach_type(self) -> int:
        if self.attach_type_name is None:
            return 0
        return _attach_types()[self.attach_type_name]

    @property
    def prog_flags(self) -> int:
        """The prog_flags libbpf's libbpf_prepare_prog_load() adds for this entry."""
        flags = 0
        if self.flags & SecFlags.SLEEPABLE:
            flags |= BPF_F_SLEEPABLE
        if self.flags & SecFlags.XDP_FRAGS and self.prog_type_name == "XDP":
            flags |= BPF_F_XDP_HAS_FRAGS
        return flags

    def matches(self, section: str) -> bool:
        prefix = self.prefix
        if prefix.endswith("/"):
            return section.startswith(prefix)
        if prefix.endswith("+"):
            stem = prefix[:-1]
            return section == stem or section.startswith(stem + "/")
        return section == prefix


_N, _A, _AO, _B, _S, _X = (SecFlags.NONE, SecFlags.ATTACHABLE, SecFlags.ATTACHABLE_OPT,
                           SecFlags.ATTACH_BTF, SecFlags.SLEEPABLE, SecFlags.XDP_FRAGS)


def _d(prefix: str, prog_type: str, attach_type: str | None, flags: SecFlags,
       attach: str | None = None) -> SecDef:
    return SecDef(prefix, prog_type, attach_type, flags, attach)


# libbpf 1.1.2's table, in its order (order decides: "uprobe+" before "uprobe.s+" is
# harmless because "+" requires an exact stem or a "/").
SECTION_DEFS: tuple[SecDef, ...] = (
    _d("socket", "SOCKET_FILTER", None, _N),
    _d("sk_reuseport/migrate", "SK_REUSEPORT", "BPF_SK_REUSEPORT_SELECT_OR_MIGRATE", _A),
    _d("sk_reuseport", "SK_REUSEPORT", "BPF_SK_REUSEPORT_SELECT", _A),
    _d("kprobe+", "KPROBE", None, _N, "kprobe"),
    _d("uprobe+", "KPROBE", None, _N, "uprobe"),
    _d("uprobe.s+", "KPROBE", None, _S, "uprobe"),
    _d("kretprobe+", "KPROBE", None, _N, "kprobe"),
    _d("uretprobe+", "KPROBE", None, _N, "uprobe"),
    _d("uretprobe.s+", "KPROBE", None, _S, "uprobe"),
    _d("kprobe.multi+", "KPROBE", "BPF_TRACE_KPROBE_MULTI", _N, "kprobe_multi"),
    _d("kretprobe.multi+", "KPROBE", "BPF_TRACE_KPROBE_MULTI", _N, "kprobe_multi"),
    _d("ksyscall+", "KPROBE", None, _N, "ksyscall"),
    _d("kretsyscall+", "KPROBE", None, _N, "ksyscall"),
    _d("usdt+", "KPROBE", None, _N, "usdt"),
    _d("tc", "SCHED_CLS", None, _N),
    _d("classifier", "SCHED_CLS", None, _N),
    _d("action", "SCHED_ACT", None, _N),
    _d("tracepoint+", "TRACEPOINT", None, _N, "tp"),
    _d("tp+", "TRACEPOINT", None, _N, "tp"),
    _d("raw_tracepoint+", "RAW_TRACEPOINT", None, _N, "raw_tp"),
    _d("raw_tp+", "RAW_TRACEPOINT", None, _N, "raw_tp"),
    _d("raw_tracepoint.w+", "RAW_TRACEPOINT_WRITABLE", None, _N, "raw_tp"),
    _d("raw_tp.w+", "RAW_TRACEPOINT_WRITABLE", None, _N, "raw_tp"),
    _d("tp_btf+", "TRACING", "BPF_TRACE_RAW_TP", _B, "trace"),
    _d("fentry+", "TRACING", "BPF_TRACE_FENTRY", _B, "trace"),
    _d("fmod_ret+", "TRACING", "BPF_MODIFY_RETURN", _B, "trace"),
    _d("fexit+", "TRACING", "BPF_TRACE_FEXIT", _B, "trace"),
    _d("fentry.s+", "TRACING", "BPF_TRACE_FENTRY", _B | _S, "trace"),
    _d("fmod_ret.s+", "TRACING", "BPF_MODIFY_RETURN", _B | _S, "trace"),
    _d("fexit.s+", "TRACING", "BPF_TRACE_FEXIT", _B | _S, "trace"),
    _d("freplace+", "EXT", None, _B, "trace"),
    _d("lsm+", "LSM", "BPF_LSM_MAC", _B, "lsm"),
    _d("lsm.s+", "LSM", "BPF_LSM_MAC", _B | _S, "lsm"),
    _d("lsm_cgroup+", "LSM", "BPF_LSM_CGROUP", _B),
    _d("iter+", "TRACING", "BPF_TRACE_ITER", _B, "iter"),
    _d("iter.s+", "TRACING", "BPF_TRACE_ITER", _B | _S, "iter"),
    _d("syscall", "SYSCALL", None, _S),
    _d("xdp.frags/devmap", "XDP", "BPF_XDP_DEVMAP", _X),
    _d("xdp/devmap", "XDP", "BPF_XDP_DEVMAP", _A),
    _d("xdp.frags/cpumap", "XDP", "BPF_XDP_CPUMAP", _X),
    _d("xdp/cpumap", "XDP", "BPF_XDP_CPUMAP", _A),
    _d("xdp.frags", "XDP", "BPF_XDP", _X),
    _d("xdp", "XDP", "BPF_XDP", _AO),
    _d("perf_event", "PERF_EVENT", None, _N),
    _d("lwt_in", "LWT_IN", None, _N),
    _d("lwt_out", "LWT_OUT", None, _N),
    _d("lwt_xmit", "LWT_XMIT", None, _N),
    _d("lwt_seg6local", "LWT_SEG6LOCAL", None, _N),
    _d("sockops", "SOCK_OPS", "BPF_CGROUP_SOCK_OPS", _AO),
    _d("sk_skb/stream_parser", "SK_SKB", "BPF_SK_SKB_STREAM_PARSER", _AO),
    _d("sk_skb/stream_verdict", "SK_SKB", "BPF_SK_SKB_STREAM_VERDICT", _AO),
    _d("sk_skb", "SK_SKB", None, _N),
    _d("sk_msg", "SK_MSG", "BPF_SK_MSG_VERDICT", _AO),
    _d("lirc_mode2", "LIRC_MODE2", "BPF_LIRC_MODE2", _AO),
    _d("flow_dissector", "FLOW_DISSECTOR", "BPF_FLOW_DISSECTOR", _AO),
    _d("cgroup_skb/ingress", "CGROUP_SKB", "BPF_CGROUP_INET_INGRESS", _AO),
    _d("cgroup_skb/egress", "CGROUP_SKB", "BPF_CGROUP_INET_EGRESS", _AO),
    _d("cgroup/skb", "CGROUP_SKB", None, _N),
    _d("cgroup/sock_create", "CGROUP_SOCK", "BPF_CGROUP_INET_SOCK_CREATE", _A),
    _d("cgroup/sock_release", "CGROUP_SOCK", "BPF_CGROUP_INET_SOCK_RELEASE", _A),
    _d("cgroup/sock", "CGROUP_SOCK", "BPF_CGROUP_INET_SOCK_CREATE", _AO),
    _d("cgroup/post_bind4", "CGROUP_SOCK", "BPF_CGROUP_INET4_POST_BIND", _A),
    _d("cgroup/post_bind6", "CGROUP_SOCK", "BPF_CGROUP_INET6_POST_BIND", _A),
    _d("cgroup/bind4", "CGROUP_SOCK_ADDR", "BPF_CGROUP_INET4_BIND", _A),
    _d("cgroup/bind6", "CGROUP_SOCK_ADDR", "BPF_CGROUP_INET6_BIND", _A),
    _d("cgroup/connect4", "CGROUP_SOCK_ADDR", "BPF_CGROUP_INET4_CONNECT", _A),
    _d("cgroup/connect6", "CGROUP_SOCK_ADDR", "BPF_CGROUP_INET6_CONNECT", _A),
    _d("cgroup/sendmsg4", "CGROUP_SOCK_ADDR", "BPF_CGROUP_UDP4_SENDMSG", _A),
    _d("cgroup/sendmsg6", "CGROUP_SOCK_ADDR", "BPF_CGROUP_UDP6_SENDMSG", _A),
    _d("cgroup/recvmsg4", "CGROUP_SOCK_ADDR", "BPF_CGROUP_UDP4_RECVMSG", _A),
    _d("cgroup/recvmsg6", "CGROUP_SOCK_ADDR", "BPF_CGROUP_UDP6_RECVMSG", _A),
    _d("cgroup/getpeername4", "CGROUP_SOCK_ADDR", "BPF_CGROUP_INET4_GETPEERNAME", _A),
    _d("cgroup/getpeername6", "CGROUP_SOCK_ADDR", "BPF_CGROUP_INET6_GETPEERNAME", _A),
    _d("cgroup/getsockname4", "CGROUP_SOCK_ADDR", "BPF_CGROUP_INET4_GETSOCKNAME", _A),
    _d("cgroup/getsockname6", "CGROUP_SOCK_ADDR", "BPF_CGROUP_INET6_GETSOCKNAME", _A),
    _d("cgroup/sysctl", "CGROUP_SYSCTL", "BPF_CGROUP_SYSCTL", _A),
    _d("cgroup/getsockopt", "CGROUP_SOCKOPT", "BPF_CGROUP_GETSOCKOPT", _A),
    _d("cgroup/setsockopt", "CGROUP_SOCKOPT", "BPF_CGROUP_SETSOCKOPT", _A),
    _d("cgroup/dev", "CGROUP_DEVICE", "BPF_CGROUP_DEVICE", _AO),
    _d("struct_ops+", "STRUCT_OPS", None, _N),
    _d("sk_lookup", "SK_LOOKUP", "BPF_SK_LOOKUP", _A),
)


def find_sec_def(section: str) -> SecDef | None:
    """The table entry libbpf picks for a program section (without its leading '?')."""
    for sec_def in SECTION_DEFS:
        if sec_def.matches(section):
            return sec_def
    return None


def attach_target(section: str, sec_def: SecDef | None) -> str | None:
    """What the section names as its attach target: the text after the first '/'
    (``syscalls/sys_enter_write`` for ``tp/syscalls/sys_enter_write``, ``do_unlinkat``
    for ``kprobe/do_unlinkat``), or None when there is none. For sections whose
    '/'-part is part of the table entry itself (``cgroup/skb``, ``xdp/devmap``) there
    is no target."""
    if sec_def is None:
        return None
    stem = sec_def.prefix.rstrip("+")
    if not sec_def.prefix.endswith("+") or len(section) <= len(stem):
        return None
    return section[len(stem) + 1:]


@cache
def _prog_types() -> dict[str, int]:
    return enum_values("bpf_prog_type")


@cache
def _attach_types() -> dict[str, int]:
    return enum_values("bpf_attach_type")
