"""Which programs of an object libbpf 1.1.2's skeleton attach would auto-attach, decided
from the object's spec alone (section names and libbpf's section table), never from what
our loader's attach did: the parity compare uses it to tell a reference's hand attach of
a program from libbpf's auto-attach (docs/parity.md, "Sections").

libbpf 1.1.2 bpf_object__attach_skeleton(): a program is tried when it is loaded
(autoload), its sec_def has an attach function (``SecDef.attach``), and no link was set
by hand before; the attach function then skips, with no call at all, a section that
names no target: attach_tp() ``tp``/``tracepoint``, attach_raw_tp() a bare
``raw_tp``/``raw_tracepoint``(``.w``), attach_kprobe() ``kprobe``/``kretprobe``,
attach_ksyscall() ``ksyscall``/``kretsyscall``, attach_kprobe_multi()
``kprobe.multi``/``kretprobe.multi``, attach_uprobe() a section its sscanf reads only
the probe type from (``uprobe``, ``uretprobe.s``...), attach_usdt() a bare ``usdt``.
attach_trace(), attach_lsm() and attach_iter() always try. A section with a target
that then fails to attach is still tried: it counts as auto-attached.
"""

from __future__ import annotations

from bpfreplay.loader.spec import ObjectSpec, ProgramSpec

# Section names that name no target, per attach function of libbpf 1.1.2.
_NO_TARGET = {
    "tp": ("tp", "tracepoint"),
    "raw_tp": ("raw_tp", "raw_tracepoint", "raw_tp.w", "raw_tracepoint.w"),
    "kprobe": ("kprobe", "kretprobe"),
    "ksyscall": ("ksyscall", "kretsyscall"),
    "kprobe_multi": ("kprobe.multi", "kretprobe.multi"),
    "usdt": ("usdt",),
}
_ALWAYS = ("trace", "lsm", "iter")


def _uprobe_has_target(section: str) -> bool:
    """attach_uprobe(): sscanf("%m[^/]/%m[^:]:...") reading one item only (no '/', or
    nothing but ':' after it) is a valid section without a target: skipped."""
    _, slash, rest = section.partition("/")
    return bool(slash) and bool(rest) and not rest.startswith(":")


def is_auto_attached(program: ProgramSpec) -> bool:
    """Whether bpf_object__attach_skeleton() calls this program's attach function and
    that function goes on to attach it (or fails trying)."""
    if program.is_subprog or not program.autoload or program.sec_def is None:
        return False
    how = program.sec_def.attach
    if how is None:
        return False
    if how in _ALWAYS:
        return True
    if how == "uprobe":
        return _uprobe_has_target(program.section)
    return program.section not in _NO_TARGET.get(how, ())


def not_auto_attached(spec: ObjectSpec) -> frozenset[str]:
    """The prog_name (as BPF_PROG_LOAD carries it) of each program libbpf loads but its
    skeleton attach never attaches; a name shared with an auto-attached program (the
    kernel keeps 15 bytes) is left out, since its calls could be either's."""
    loaded = [p for p in spec.entry_programs if p.autoload]
    auto = {p.kernel_name for p in loaded if is_auto_attached(p)}
    return frozenset(p.kernel_name for p in loaded if not is_auto_attached(p)) - auto
