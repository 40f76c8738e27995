"""The x86_64 syscalls bpfreplay records, and why each one matters."""

BPF = 321
PERF_EVENT_OPEN = 298
IOCTL = 16
MMAP = 9
MUNMAP = 11
CLOSE = 3
DUP = 32
DUP2 = 33
DUP3 = 292
FCNTL = 72
MEMFD_CREATE = 319
SETSOCKOPT = 54

NAMES = {
    BPF: "bpf",
    PERF_EVENT_OPEN: "perf_event_open",
    IOCTL: "ioctl",
    MMAP: "mmap",
    MUNMAP: "munmap",
    CLOSE: "close",
    DUP: "dup",
    DUP2: "dup2",
    DUP3: "dup3",
    FCNTL: "fcntl",
    MEMFD_CREATE: "memfd_create",
    SETSOCKOPT: "setsockopt",
}
NUMBERS = {name: nr for nr, name in NAMES.items()}

# Arguments the filter looks at, to stop only on calls that can concern BPF objects.
PERF_IOC_TYPE = ord("$")      # PERF_EVENT_IOC_* are _IO('$', n) / _IOW('$', n, ...)
F_DUPFD, F_DUPFD_CLOEXEC = 0, 1030
SOL_SOCKET, SO_ATTACH_BPF, SO_DETACH_BPF = 1, 50, 27
# The socket options that attach or detach a BPF program (eBPF by fd, classic BPF as a
# struct sock_fprog), all recorded; SO_DETACH_BPF is SO_DETACH_FILTER.
SO_ATTACH_FILTER, SO_ATTACH_REUSEPORT_CBPF, SO_ATTACH_REUSEPORT_EBPF = 26, 51, 52
SO_DETACH_REUSEPORT_BPF = 68
BPF_SOCKET_OPTIONS = (SO_ATTACH_BPF, SO_DETACH_BPF, SO_ATTACH_FILTER, SO_ATTACH_REUSEPORT_CBPF,
                      SO_ATTACH_REUSEPORT_EBPF, SO_DETACH_REUSEPORT_BPF)
