"""The differential corpus: every object `make parity` (tools/parity_table.py) and
tests/test_corpus.py load twice, with the C reference loader refload on the system
libbpf and with `bpfreplay run`, and what each object covers.

Objects of tests/corpus/ are built by tests/corpus/Makefile; the corpus also takes the
loader test objects of tests/data/ and the reference minimal instead of duplicating
them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
CORPUS_DIR = ROOT / "tests" / "corpus"
BUILD = CORPUS_DIR / "build"
REFLOAD = BUILD / "refload"
TARGET = BUILD / "target"
PIN_ROOT = Path("/sys/fs/bpf")

# outcomes (bpfreplay.compare's names)
PARITY, FAILED_PARITY = "parity", "failed_parity"


@dataclass(frozen=True)
class CorpusObject:
    name: str  # the table's name for it
    path: Path  # the built object
    covers: str  # what it covers, for the table
    expect: str = PARITY  # PARITY, or FAILED_PARITY for a load this kernel refuses
    globals: tuple[str, ...] = ()  # NAME=pid set before load (refload -s, run --set)
    pins: tuple[str, ...] = ()  # pin names under PIN_ROOT, removed before and after
    pending: str | None = None  # a feature another change is still building
    opens: bool = True  # False: libbpf refuses it at open, before any call (refload exits 2)

    @property
    def make_dir(self) -> Path:
        return self.path.parent.parent


def _own(name: str, covers: str, **kw) -> CorpusObject:
    return CorpusObject(name, BUILD / f"{name}.bpf.o", covers, **kw)


def _data(kind: str, name: str, covers: str, **kw) -> CorpusObject:
    return CorpusObject(f"{kind}/{name}", ROOT / "tests" / "data" / kind / "build" /
                        f"{name}.bpf.o", covers, **kw)


CORPUS: tuple[CorpusObject, ...] = (
    # libbpf-bootstrap example kinds
    CorpusObject("reference/minimal", ROOT / "reference" / "libbpf-bootstrap" /
                 "minimal.bpf.o", "the reference minimal (tracepoint, .bss pid filter)",
                 globals=("my_pid",)),
    _own("minimal", "minimal: tracepoint, pid filter in .bss set before load",
         globals=("my_pid",)),
    _own("minimal_legacy", "minimal_legacy: pid filter in an array map, no globals"),
    _own("minimal_ns", "minimal_ns: bpf_get_ns_current_pid_tgid, dev/ino in .bss"),
    _own("bootstrap", "bootstrap: ring buffer, CO-RE reads, const volatile config, hash"),
    _own("bootstrap_legacy", "bootstrap_legacy: perf event array, per-CPU array, CO-RE"),
    _own("uprobe", "uprobe/uretprobe on our target by name, uprobe by func+offset"),
    _own("usdt", "usdt/ on our target (arguments via usdt.bpf.h), a bare SEC(\"usdt\")"),
    _own("sockfilter", "sockfilter: socket filter, array and ring buffer (not attached)"),
    _own("tc", "tc: SEC(\"tc\") classifier, direct packet access (not attached)"),
    _own("task_iter", "task_iter: iter/task with BPF_SEQ_PRINTF"),
    _own("profile", "profile: perf_event program, stack trace map, ring buffer"),
    _own("kprobe", "kprobe/kretprobe with BPF_KPROBE (no kprobes here: attach fails)",
         expect=FAILED_PARITY),
    _own("ksyscall", "ksyscall/kretsyscall (no kprobes here: attach fails)",
         expect=FAILED_PARITY),
    _own("fentry", "fentry/fexit with BPF_PROG (refused at load here)",
         expect=FAILED_PARITY),
    _own("lsm", "lsm/bpf (refused at load here)", expect=FAILED_PARITY),
    # libbpf features
    _own("maptypes", "19 more map types: percpu/lru hashes, lpm trie, queue, stack, bloom, "
         "task/inode/sk storage, cgroup array, devmaps, cpumap, xsk, sock maps, "
         "reuseport, user ringbuf"),
    _data("loader", "maps", "hash, array, percpu array, ringbuf rounding, map-in-map with "
          "initial slots, prog array, long map name"),
    _own("progs", "prog array with initial slots, tail calls, static and global "
         "subprograms, bpf_loop callback"),
    _own("sections", ".data/.rodata/.bss, custom .data.*/.rodata.*, strings, .kconfig "
         "(weak, missing)"),
    _data("loader", "globals", "every data section incl. .bss.*, hidden and static "
          "globals, callbacks, sleepable and non-autoloaded programs"),
    _data("loader", "kconfig", ".kconfig externs of every kind"),
    _own("core_kinds", "every CO-RE relocation kind of clang 14, ___v1 flavours, missing "
         "type/field/enum value, bitfields, a poisoned relocation"),
    _data("loader", "core", "common CO-RE relocations, in a subprogram too"),
    _own("core_new", "clang-22: type-match relocations, ENUM64 flavour and values"),
    _data("loader", "ksyms", "typed, untyped and weak __ksym, kfuncs (this kernel has no "
          "address for bpf_prog_active: the load fails)", expect=FAILED_PARITY),
    _own("ksym_missing", "a strong __ksym the kernel lacks (load fails)",
         expect=FAILED_PARITY),
    _own("attach_kinds", "program and expected attach types of xdp, xdp.frags, cgroup_skb, "
         "cgroup/sock_create, cgroup/getsockopt, sockops, sk_msg, sk_skb, sk_lookup, "
         "flow_dissector, lwt_in, syscall; tp_btf/ and sleepable uprobe.s/ attached"),
    _own("special_maps", "map values with bpf_spin_lock, bpf_timer and a kptr (BTF type "
         "tag), for_each_map_elem and timer callbacks, bpf_trace_vprintk"),
    _own("struct_ops", "a struct_ops map (tcp_congestion_ops) and its programs"),
    _own("license_rejected", "a non-GPL program calling a GPL-only helper (verifier "
         "rejects)", expect=FAILED_PARITY),
    _own("misc", "a program not autoloaded (SEC(\"?...\")), a user map created "
         "BPF_F_MMAPABLE, a NUMA-node map, a read-only-for-programs map, raw key/value "
         "sizes, CO-RE string and array-element reads, raw_tp/"),
    _own("kfuncs", "kfunc calls (task acquire/release, RCU lock), a weak missing kfunc"),
    _own("linked", "two objects joined by libbpf's static linker (bpftool gen object): "
         "a global function and a map across files, weak and strong definitions"),
    _own("unknown_section", "a section libbpf 1.1.2 does not know (uprobe.multi/): the "
         "load fails", expect=FAILED_PARITY),
    _own("missing_tp", "a tracepoint that does not exist: the attach fails in tracefs",
         expect=FAILED_PARITY),
    _own("missing_raw_tp", "a raw tracepoint that does not exist: RAW_TRACEPOINT_OPEN "
         "fails", expect=FAILED_PARITY),
    _own("cpuv4", "clang-22 -mcpu=v4: sign-extending loads/moves, signed div/mod, bswap, "
         "v3 atomics with results"),
    _own("progs_clang22", "progs built by clang-22 (its prog array's BTF makes libbpf "
         "retry the map without BTF)"),
    _own("sections_clang22", "sections built by clang-22"),
    _own("core_kinds_clang22", "core_kinds built by clang-22"),
    _own("bootstrap_clang22", "bootstrap built by clang-22"),
    _own("usdt_lib", "usdt/ in a shared library of ours, with a semaphore "
         "(ref_ctr_offset)"),
    _own("kprobe_multi", "kprobe.multi/ and kretprobe.multi/ with a glob (attach fails "
         "here)", expect=FAILED_PARITY),
    _own("freplace", "freplace/ without a target program (load fails)",
         expect=FAILED_PARITY),
    _own("fentry_missing", "fentry/ on a function the kernel lacks (load fails after "
         "the module-BTF walk)", expect=FAILED_PARITY),
    _own("maps_only", "maps and global data, no program"),
    _own("probe_read_unused", "bpf_probe_read_kernel/user only in a .text function no "
         "program calls and in a program not autoloaded (libbpf still asks the "
         "probe_read_kern probe)"),
    _own("open_fails", "an extern function with no known section: libbpf refuses it at "
         "open, before any call, and so do we (compared: both traces empty)",
         expect=FAILED_PARITY, opens=False),
    _own("partial_attach", "a tracepoint attached, then a uprobe on a missing function "
         "failing in libbpf's ELF lookup; destroy detaches the first",
         expect=FAILED_PARITY),
    _own("core_poisoned", "a CO-RE read of a missing field without a check: poisoned, "
         "rejected by the verifier", expect=FAILED_PARITY),
    _own("map_rejected", "a hash map of 0 entries: MAP_CREATE fails, retried without "
         "BTF", expect=FAILED_PARITY),
    _own("big_data", "data sections over a page: .bss 70000, .data 5000, .rodata 9000 "
         "bytes"),
    _own("dash-ed.name", "sections under a file name bpftool sanitises (dash_ed_name_bpf)"),
    _own("progs_noext", "progs with .BTF.ext stripped (llvm-objcopy): no func/line info, "
         "the kernel wants func_info for the bpf_loop callback", expect=FAILED_PARITY),
    _own("attach_kinds2", "more types: sk_reuseport(/migrate), cgroup dev/sysctl, sock_addr "
         "hooks, post_bind4, sock_release, setsockopt, lwt out/xmit/seg6local, sk_skb "
         "parser, xdp/devmap, xdp/cpumap, action, classifier"),
    _own("inner_maps", "an array of ring buffers and a hash of NO_PREALLOC hashes, each "
         "with an initial slot"),
    _own("slot_unloaded", "a prog array slot naming a program not autoloaded (the load "
         "fails: EBADF)", expect=FAILED_PARITY),
    _own("usdt_args", "usdt/ on target2 (-O2): constant, register, stack-memory, signed "
         "byte and 64-bit argument specs, a probe at two sites, semaphores"),
    _own("usdt_rip", "usdt/ with %rip-relative arguments libbpf 1.1.2 cannot parse (the "
         "attach fails)", expect=FAILED_PARITY),
    _own("pinned", "LIBBPF_PIN_BY_NAME map beside an unpinned one",
         pins=("corpus_pinned_counts",)),
    _data("loader", "nobtf", "no BTF at all, a \"version\" section"),
    _data("run", "minimal_nobtf", "the reference minimal without BTF"),
    _data("run", "uprobe", "uprobe/uretprobe on libc by name (library search)"),
    _data("run", "rejected", "a program the verifier rejects", expect=FAILED_PARITY),
)


@dataclass(frozen=True)
class RuntimeApp:
    """A corpus object's application of our own, doing after the load what the upstream
    libbpf-bootstrap example's does (tests/test_runtime_parity.py), and the `bpfreplay
    run` options that do the same; "{dev}" stands for the test's veth device."""

    name: str  # the test's name for it
    obj: str  # the corpus object (CorpusObject.name)
    app: Path
    app_args: tuple[str, ...]
    run_options: tuple[str, ...]
    network: bool  # needs the test's network namespace
    # what its own calls are, in the application section, as the report names them
    calls: tuple[str, ...]
    # programs the application attaches by hand with options libbpf's auto-attach never
    # passes (paired with our auto-attach, the options shown apart)
    hand_attached: tuple[str, ...] = ()


RUNTIME_APPS: tuple[RuntimeApp, ...] = (
    RuntimeApp("sockfilter", "sockfilter", BUILD / "sockfilter_app", ("{dev}",),
               ("--socket", "{dev}"), True, ("setsockopt",)),
    RuntimeApp("tc", "tc", BUILD / "tc_app", ("{dev}", "ingress"), ("--tc", "{dev}:ingress"),
               True, ("bpf BPF_OBJ_GET_INFO_BY_FD",)),
    RuntimeApp("tc-egress", "tc", BUILD / "tc_app", ("{dev}", "egress"), ("--tc", "{dev}:egress"),
               True, ("bpf BPF_OBJ_GET_INFO_BY_FD",)),
    # per online CPU: the event, the link and its enable; the perf_link probe on the
    # first; per CPU at the end: the disable and the two closes of bpf_link__destroy()
    RuntimeApp("profile", "profile", BUILD / "profile_app", ("97",),
               ("--perf-event", "cpu-clock:97"), False,
               ("perf_event_open", "bpf BPF_LINK_CREATE", "ioctl", "close")),
    # the attach by hand with a zeroed link_info (paired with our auto-attach, its
    # options shown apart), the iterator fd and its close (the reads between are no
    # calls the recorder records: the text read is compared in the test instead)
    RuntimeApp("task_iter", "task_iter", BUILD / "task_iter_app", (), (), False,
               ("bpf BPF_ITER_CREATE", "close"), hand_attached=("list_tasks",)),
    # ring_buffer__new(): the map's info, the consumer and data mappings; their munmaps
    # at ring_buffer__free()
    RuntimeApp("bootstrap", "bootstrap", BUILD / "bootstrap_app", (),
               ("--event", "struct event", "--header", str(CORPUS_DIR / "bootstrap.h")),
               False, ("bpf BPF_OBJ_GET_INFO_BY_FD", "mmap", "munmap")),
    # perf_buffer__new(): the map's info, per online CPU the BPF_OUTPUT event, its mmap,
    # enable and map update; per CPU at perf_buffer__free() the map delete, munmap,
    # disable and close
    RuntimeApp("bootstrap_legacy", "bootstrap_legacy", BUILD / "bootstrap_legacy_app", (),
               ("--event", "struct event"), False,
               ("bpf BPF_OBJ_GET_INFO_BY_FD", "perf_event_open", "mmap", "ioctl",
                "bpf BPF_MAP_UPDATE_ELEM", "bpf BPF_MAP_DELETE_ELEM", "munmap", "close")),
)


def by_name(name: str) -> CorpusObject:
    return next(o for o in CORPUS if o.name == name)


def make_dirs() -> list[Path]:
    """The directories whose `make all` builds the corpus."""
    return [CORPUS_DIR, ROOT / "tests" / "data" / "loader", ROOT / "tests" / "data" / "run",
            ROOT / "reference" / "libbpf-bootstrap"]


def clean_pins(obj: CorpusObject) -> None:
    """Remove what a previous load pinned, so that each load creates its maps (libbpf
    reuses a pin it finds)."""
    for name in obj.pins:
        (PIN_ROOT / name).unlink(missing_ok=True)
