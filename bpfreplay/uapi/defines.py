"""The uapi ``#define`` constants that BTF cannot carry, written out by hand.

BTF holds enums but not preprocessor macros, so the flag words of ``union bpf_attr``
(prog_flags, attach flags, query and test-run flags ...), the BPF_PSEUDO_* source
registers and the perf ioctl numbers are here. Values are from the kernel's uapi
headers: include/uapi/linux/bpf.h and include/uapi/linux/perf_event.h (plus the few
neighbours named at each group). tests/test_uapi_defines.py compiles a C program
against the installed headers and compares every value they have; the constants newer
than those headers are compared with the newest upstream text (bpf-next's bpf.h and
perf_event.h as synced into libbpf, July 2026).

The groups at the end (``FLAG_SETS``, ``VALUE_SETS``) are what the attr decoder reads:
name -> value, in the order names are printed.
"""

from __future__ import annotations

# --- include/uapi/linux/bpf.h: attach flags (BPF_PROG_ATTACH, BPF_LINK_CREATE/UPDATE) ---
BPF_F_ALLOW_OVERRIDE = 1 << 0
BPF_F_ALLOW_MULTI = 1 << 1
BPF_F_REPLACE = 1 << 2
BPF_F_BEFORE = 1 << 3
BPF_F_AFTER = 1 << 4
BPF_F_ID = 1 << 5
BPF_F_PREORDER = 1 << 6
BPF_F_LINK = 1 << 13  # "#define BPF_F_LINK BPF_F_LINK /* 1 << 13 */": the map-flags enum value

# --- bpf.h: BPF_PROG_LOAD prog_flags ---
BPF_F_STRICT_ALIGNMENT = 1 << 0
BPF_F_ANY_ALIGNMENT = 1 << 1
BPF_F_TEST_RND_HI32 = 1 << 2
BPF_F_TEST_STATE_FREQ = 1 << 3
BPF_F_SLEEPABLE = 1 << 4
BPF_F_XDP_HAS_FRAGS = 1 << 5
BPF_F_XDP_DEV_BOUND_ONLY = 1 << 6
BPF_F_TEST_REG_INVARIANTS = 1 << 7

# --- bpf.h: flags that live in the anonymous map-flags enum but serve other commands ---
BPF_F_RDONLY = 1 << 3
BPF_F_WRONLY = 1 << 4
BPF_F_RDONLY_PROG = 1 << 7
BPF_F_WRONLY_PROG = 1 << 8
BPF_F_PATH_FD = 1 << 14  # BPF_OBJ_PIN / BPF_OBJ_GET: path_fd is valid
BPF_F_TOKEN_FD = 1 << 16  # prog_flags, map_flags, btf_flags, open_flags: a token fd is given

# --- bpf.h: link_create sub-flags ---
BPF_F_KPROBE_MULTI_RETURN = 1 << 0
BPF_F_UPROBE_MULTI_RETURN = 1 << 0
BPF_F_UPROBE_MULTI_PATH_FD = 1 << 1
BPF_F_NETFILTER_IP_DEFRAG = 1 << 0

# --- bpf.h: ldimm64 / call src_reg pseudo values ---
BPF_PSEUDO_MAP_FD = 1
BPF_PSEUDO_MAP_VALUE = 2
BPF_PSEUDO_BTF_ID = 3
BPF_PSEUDO_FUNC = 4
BPF_PSEUDO_MAP_IDX = 5
BPF_PSEUDO_MAP_IDX_VALUE = 6
BPF_PSEUDO_CALL = 1
BPF_PSEUDO_KFUNC_CALL = 2

# --- bpf.h: BPF_PROG_QUERY query_flags, BPF_PROG_TEST_RUN flags ---
BPF_F_QUERY_EFFECTIVE = 1 << 0
BPF_F_TEST_RUN_ON_CPU = 1 << 0
BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1
BPF_F_TEST_SKB_CHECKSUM_COMPLETE = 1 << 2

# --- bpf.h: map element flags (anonymous enum; newer than some BTFs) ---
BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2
BPF_F_LOCK = 4
BPF_F_CPU = 8  # per-CPU maps: the upper 32 bits of flags are a CPU number
BPF_F_ALL_CPUS = 16

# --- bpf.h: sizes and stream ids ---
BPF_OBJ_NAME_LEN = 16
BPF_TAG_SIZE = 8
BPF_STREAM_STDOUT = 1
BPF_STREAM_STDERR = 2
BPF_COMMON_ATTRS = 1 << 16  # or-ed into the command: bpf() has a struct bpf_common_attr

# --- include/uapi/linux/if_link.h: link_create.flags of BPF_XDP links ---
XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_HW_MODE = 1 << 3
XDP_FLAGS_REPLACE = 1 << 4

# --- include/uapi/linux/netfilter.h: link_create.netfilter.pf / .hooknum ---
NFPROTO_UNSPEC = 0
NFPROTO_INET = 1
NFPROTO_IPV4 = 2
NFPROTO_ARP = 3
NFPROTO_NETDEV = 5
NFPROTO_BRIDGE = 7
NFPROTO_IPV6 = 10
NF_INET_PRE_ROUTING = 0
NF_INET_LOCAL_IN = 1
NF_INET_FORWARD = 2
NF_INET_LOCAL_OUT = 3
NF_INET_POST_ROUTING = 4

# --- include/uapi/linux/fcntl.h: obj.path_fd's default ---
AT_FDCWD = -100


# --- include/uapi/linux/perf_event.h ---
# perf_event_open(2) flags.
PERF_FLAG_FD_NO_GROUP = 1 << 0
PERF_FLAG_FD_OUTPUT = 1 << 1
PERF_FLAG_PID_CGROUP = 1 << 2
PERF_FLAG_FD_CLOEXEC = 1 << 3

# Sizes of the published versions of struct perf_event_attr.
PERF_ATTR_SIZE_VER0 = 64
PERF_ATTR_SIZE_VER1 = 72
PERF_ATTR_SIZE_VER2 = 80
PERF_ATTR_SIZE_VER3 = 96
PERF_ATTR_SIZE_VER4 = 104
PERF_ATTR_SIZE_VER5 = 112
PERF_ATTR_SIZE_VER6 = 120
PERF_ATTR_SIZE_VER7 = 128
PERF_ATTR_SIZE_VER8 = 136
PERF_ATTR_SIZE_VER9 = 144

# PERF_TYPE_HW_CACHE config: id | (op << 8) | (result << 16).
PERF_COUNT_HW_CACHE_L1D = 0
PERF_COUNT_HW_CACHE_L1I = 1
PERF_COUNT_HW_CACHE_LL = 2
PERF_COUNT_HW_CACHE_DTLB = 3
PERF_COUNT_HW_CACHE_ITLB = 4
PERF_COUNT_HW_CACHE_BPU = 5
PERF_COUNT_HW_CACHE_NODE = 6
PERF_COUNT_HW_CACHE_OP_READ = 0
PERF_COUNT_HW_CACHE_OP_WRITE = 1
PERF_COUNT_HW_CACHE_OP_PREFETCH = 2
PERF_COUNT_HW_CACHE_RESULT_ACCESS = 0
PERF_COUNT_HW_CACHE_RESULT_MISS = 1

# branch_sample_type bits (enum perf_branch_sample_type: 1 << *_SHIFT).
PERF_SAMPLE_BRANCH_USER = 1 << 0
PERF_SAMPLE_BRANCH_KERNEL = 1 << 1
PERF_SAMPLE_BRANCH_HV = 1 << 2
PERF_SAMPLE_BRANCH_ANY = 1 << 3
PERF_SAMPLE_BRANCH_ANY_CALL = 1 << 4
PERF_SAMPLE_BRANCH_ANY_RETURN = 1 << 5
PERF_SAMPLE_BRANCH_IND_CALL = 1 << 6
PERF_SAMPLE_BRANCH_ABORT_TX = 1 << 7
PERF_SAMPLE_BRANCH_IN_TX = 1 << 8
PERF_SAMPLE_BRANCH_NO_TX = 1 << 9
PERF_SAMPLE_BRANCH_COND = 1 << 10
PERF_SAMPLE_BRANCH_CALL_STACK = 1 << 11
PERF_SAMPLE_BRANCH_IND_JUMP = 1 << 12
PERF_SAMPLE_BRANCH_CALL = 1 << 13
PERF_SAMPLE_BRANCH_NO_FLAGS = 1 << 14
PERF_SAMPLE_BRANCH_NO_CYCLES = 1 << 15
PERF_SAMPLE_BRANCH_TYPE_SAVE = 1 << 16
PERF_SAMPLE_BRANCH_HW_INDEX = 1 << 17
PERF_SAMPLE_BRANCH_PRIV_SAVE = 1 << 18
PERF_SAMPLE_BRANCH_COUNTERS = 1 << 19

# include/uapi/linux/hw_breakpoint.h: bp_type of PERF_TYPE_BREAKPOINT.
HW_BREAKPOINT_EMPTY = 0
HW_BREAKPOINT_R = 1
HW_BREAKPOINT_W = 2
HW_BREAKPOINT_RW = 3
HW_BREAKPOINT_X = 4

# include/uapi/linux/time.h: clockid with use_clockid.
CLOCK_REALTIME = 0
CLOCK_MONOTONIC = 1
CLOCK_PROCESS_CPUTIME_ID = 2
CLOCK_THREAD_CPUTIME_ID = 3
CLOCK_MONOTONIC_RAW = 4
CLOCK_REALTIME_COARSE = 5
CLOCK_MONOTONIC_COARSE = 6
CLOCK_BOOTTIME = 7
CLOCK_REALTIME_ALARM = 8
CLOCK_BOOTTIME_ALARM = 9
CLOCK_TAI = 11


# The ioctl request numbers, built as include/uapi/asm-generic/ioctl.h builds them
# (x86-64 and most architectures: 8 bits nr, 8 bits type, 14 bits size, 2 bits dir).
_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2
_POINTER_SIZE = 8  # sizeof(char *) and of any pointer on a 64-bit target


def _IOC(direction: int, kind: str, nr: int, size: int) -> int:  # noqa: N802 - the C name
    return (direction << 30) | (size << 16) | (ord(kind) << 8) | nr


def _IO(kind: str, nr: int) -> int:  # noqa: N802
    return _IOC(_IOC_NONE, kind, nr, 0)


def _IOW(kind: str, nr: int, size: int) -> int:  # noqa: N802
    return _IOC(_IOC_WRITE, kind, nr, size)


def _IOR(kind: str, nr: int, size: int) -> int:  # noqa: N802
    return _IOC(_IOC_READ, kind, nr, size)


def _IOWR(kind: str, nr: int, size: int) -> int:  # noqa: N802
    return _IOC(_IOC_READ | _IOC_WRITE, kind, nr, size)


PERF_EVENT_IOC_ENABLE = _IO("$", 0)
PERF_EVENT_IOC_DISABLE = _IO("$", 1)
PERF_EVENT_IOC_REFRESH = _IO("$", 2)
PERF_EVENT_IOC_RESET = _IO("$", 3)
PERF_EVENT_IOC_PERIOD = _IOW("$", 4, 8)  # __u64
PERF_EVENT_IOC_SET_OUTPUT = _IO("$", 5)
PERF_EVENT_IOC_SET_FILTER = _IOW("$", 6, _POINTER_SIZE)  # char *
PERF_EVENT_IOC_ID = _IOR("$", 7, _POINTER_SIZE)  # __u64 *
PERF_EVENT_IOC_SET_BPF = _IOW("$", 8, 4)  # __u32
PERF_EVENT_IOC_PAUSE_OUTPUT = _IOW("$", 9, 4)  # __u32
PERF_EVENT_IOC_QUERY_BPF = _IOWR("$", 10, _POINTER_SIZE)  # struct perf_event_query_bpf *
PERF_EVENT_IOC_MODIFY_ATTRIBUTES = _IOW("$", 11, _POINTER_SIZE)  # struct perf_event_attr *

# perf_event_attr.config of the kprobe/uprobe PMUs (their format/retprobe file says bit 0).
PERF_PROBE_CONFIG_IS_RETPROBE = 1 << 0


def _names(*names: str) -> dict[str, int]:
    values = globals()
    return {name: values[name] for name in names}


# Flag words: every set bit that has a name is printed by it; the rest as hex.
FLAG_SETS: dict[str, dict[str, int]] = {
    "prog_flags": _names(
        "BPF_F_STRICT_ALIGNMENT", "BPF_F_ANY_ALIGNMENT", "BPF_F_TEST_RND_HI32",
        "BPF_F_TEST_STATE_FREQ", "BPF_F_SLEEPABLE", "BPF_F_XDP_HAS_FRAGS",
        "BPF_F_XDP_DEV_BOUND_ONLY", "BPF_F_TEST_REG_INVARIANTS", "BPF_F_TOKEN_FD"),
    "attach_flags": _names(
        "BPF_F_ALLOW_OVERRIDE", "BPF_F_ALLOW_MULTI", "BPF_F_REPLACE", "BPF_F_BEFORE",
        "BPF_F_AFTER", "BPF_F_ID", "BPF_F_PREORDER", "BPF_F_LINK"),
    "query_flags": _names("BPF_F_QUERY_EFFECTIVE"),
    "test_run_flags": _names(
        "BPF_F_TEST_RUN_ON_CPU", "BPF_F_TEST_XDP_LIVE_FRAMES",
        "BPF_F_TEST_SKB_CHECKSUM_COMPLETE"),
    "obj_file_flags": _names("BPF_F_RDONLY", "BPF_F_WRONLY", "BPF_F_PATH_FD"),
    "open_flags": _names("BPF_F_RDONLY", "BPF_F_WRONLY", "BPF_F_TOKEN_FD"),
    "token_fd_flags": _names("BPF_F_TOKEN_FD"),
    "map_elem_flags": _names("BPF_F_LOCK", "BPF_F_CPU", "BPF_F_ALL_CPUS"),
    "netfilter_flags": _names("BPF_F_NETFILTER_IP_DEFRAG"),
    "xdp_flags": _names(
        "XDP_FLAGS_UPDATE_IF_NOEXIST", "XDP_FLAGS_SKB_MODE", "XDP_FLAGS_DRV_MODE",
        "XDP_FLAGS_HW_MODE", "XDP_FLAGS_REPLACE"),
    "perf_event_open_flags": _names(
        "PERF_FLAG_FD_NO_GROUP", "PERF_FLAG_FD_OUTPUT", "PERF_FLAG_PID_CGROUP",
        "PERF_FLAG_FD_CLOEXEC"),
    "perf_branch_sample_type": {
        name: value for name, value in globals().items()
        if name.startswith("PERF_SAMPLE_BRANCH_")
    },
}

# Enumerations that are macros (or enums absent from BTF): value -> one name.
VALUE_SETS: dict[str, dict[str, int]] = {
    "map_update_mode": _names("BPF_ANY", "BPF_NOEXIST", "BPF_EXIST"),
    "stream_id": _names("BPF_STREAM_STDOUT", "BPF_STREAM_STDERR"),
    "nfproto": _names(
        "NFPROTO_UNSPEC", "NFPROTO_INET", "NFPROTO_IPV4", "NFPROTO_ARP", "NFPROTO_NETDEV",
        "NFPROTO_BRIDGE", "NFPROTO_IPV6"),
    "nf_inet_hooks": _names(
        "NF_INET_PRE_ROUTING", "NF_INET_LOCAL_IN", "NF_INET_FORWARD", "NF_INET_LOCAL_OUT",
        "NF_INET_POST_ROUTING"),
    "ld_imm64_pseudo": _names(
        "BPF_PSEUDO_MAP_FD", "BPF_PSEUDO_MAP_VALUE", "BPF_PSEUDO_BTF_ID", "BPF_PSEUDO_FUNC",
        "BPF_PSEUDO_MAP_IDX", "BPF_PSEUDO_MAP_IDX_VALUE"),
    "call_pseudo": _names("BPF_PSEUDO_CALL", "BPF_PSEUDO_KFUNC_CALL"),
    "perf_attr_size": {
        name: value for name, value in globals().items()
        if name.startswith("PERF_ATTR_SIZE_VER")
    },
    "perf_hw_cache_id": _names(
        "PERF_COUNT_HW_CACHE_L1D", "PERF_COUNT_HW_CACHE_L1I", "PERF_COUNT_HW_CACHE_LL",
        "PERF_COUNT_HW_CACHE_DTLB", "PERF_COUNT_HW_CACHE_ITLB", "PERF_COUNT_HW_CACHE_BPU",
        "PERF_COUNT_HW_CACHE_NODE"),
    "perf_hw_cache_op_id": _names(
        "PERF_COUNT_HW_CACHE_OP_READ", "PERF_COUNT_HW_CACHE_OP_WRITE",
        "PERF_COUNT_HW_CACHE_OP_PREFETCH"),
    "perf_hw_cache_op_result_id": _names(
        "PERF_COUNT_HW_CACHE_RESULT_ACCESS", "PERF_COUNT_HW_CACHE_RESULT_MISS"),
    "hw_breakpoint_type": _names(
        "HW_BREAKPOINT_EMPTY", "HW_BREAKPOINT_R", "HW_BREAKPOINT_W", "HW_BREAKPOINT_RW",
        "HW_BREAKPOINT_X"),
    "clockid": {name: value for name, value in globals().items() if name.startswith("CLOCK_")},
    "perf_event_ioc": {
        name: value for name, value in globals().items()
        if name.startswith("PERF_EVENT_IOC_")
    },
}
