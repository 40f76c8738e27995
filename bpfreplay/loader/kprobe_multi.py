"""kprobe.multi/PATTERN and kretprobe.multi/PATTERN: one BPF link on every kernel symbol
the glob matches (libbpf 1.1.2 attach_kprobe_multi() →
bpf_program__attach_kprobe_multi_opts()).

libbpf 1.1.2's rules, as this module follows them:

- a bare ``SEC("kprobe.multi")`` / ``SEC("kretprobe.multi")`` is not auto-attached;
- the pattern is the longest prefix of the section's tail made of letters, digits and
  ``_ . * ?`` (``sscanf("%m[a-zA-Z0-9_.*?]")``); an empty one is EINVAL;
- /proc/kallsyms is read line by line (libbpf_kallsyms_parse(): address, type, a name of
  at most 499 characters, the rest of the line — a module's ``[name]`` — ignored);
  every symbol whose name the glob matches (glob_match(): ``?`` one character, ``*`` any
  run) gives its address, whatever its type, in the file's order, duplicates kept: 1.1.2
  skips nothing and deduplicates nothing (resolve_kprobe_multi_cb());
- no match is ENOENT with no kernel call;
- then one BPF_LINK_CREATE (bpf_link_create(), attr size offsetofend(link_create)):
  attach_type BPF_TRACE_KPROBE_MULTI, target_fd 0, link flags 0, kprobe_multi.flags
  BPF_F_KPROBE_MULTI_RETURN for a kretprobe, cnt, addrs (an array of u64), no syms and
  no cookies. A failure there is not retried as RAW_TRACEPOINT_OPEN (the opts carry
  kprobe_multi fields, so bpf_link_create() gives up at once).
"""

from __future__ import annotations

import errno as errno_codes
import re
import struct
from collections.abc import Iterable, Iterator

from bpfreplay import sys as bsys
from bpfreplay.errors import LoaderError
from bpfreplay.loader import bpfcalls
from bpfreplay.loader.kernel import Link, LoadedObject, LoadedProgram
from bpfreplay.uapi import enum_values

KALLSYMS = "/proc/kallsyms"
BPF_TRACE_KPROBE_MULTI = enum_values("bpf_attach_type")["BPF_TRACE_KPROBE_MULTI"]
BPF_F_KPROBE_MULTI_RETURN = 1  # include/uapi/linux/bpf.h: 1U << 0
KALLSYMS_NAME_MAX = 499  # libbpf_kallsyms_parse(): "%499s"
_PATTERN = re.compile(r"[a-zA-Z0-9_.*?]*")


def glob_match(name: str, pattern: str) -> bool:
    """libbpf 1.1.2 glob_match() (from perf's string.c): ``?`` matches one character,
    ``*`` any run of characters (empty included); everything else itself."""
    i = 0
    while i < len(name) and i < len(pattern) and pattern[i] != "*":
        if pattern[i] != "?" and name[i] != pattern[i]:
            return False
        i += 1
    rest_name, rest_pattern = name[i:], pattern[i:]
    if rest_pattern.startswith("*"):
        rest_pattern = rest_pattern.lstrip("*")
        if not rest_pattern:
            return True
        return any(glob_match(rest_name[k:], rest_pattern) for k in range(len(rest_name)))
    return not rest_name and not rest_pattern


def kallsyms_entries(lines: Iterable[str]) -> Iterator[tuple[int, str, str]]:
    """(address, type, name) of each /proc/kallsyms line, as libbpf_kallsyms_parse()
    reads them; a line it could not read is a LoaderError (libbpf: EINVAL)."""
    for number, line in enumerate(lines, 1):
        words = line.split()
        if not words:
            continue
        try:
            if len(words) < 3 or len(words[1]) != 1:
                raise ValueError(line)
            address = int(words[0], 16)
        except ValueError:
            raise LoaderError(f"failed to read kallsyms entry at line {number} of "
                              f"{KALLSYMS}: {line.rstrip()!r}") from None
        yield address, words[1], words[2][:KALLSYMS_NAME_MAX]


def resolve(pattern: str, lines: Iterable[str]) -> list[int]:
    """The addresses bpf_program__attach_kprobe_multi_opts() passes for ``pattern``:
    resolve_kprobe_multi_cb() over every kallsyms entry, in order, duplicates kept."""
    return [address for address, _, name in kallsyms_entries(lines)
            if glob_match(name, pattern)]


def section_pattern(section: str) -> tuple[str, bool] | None:
    """attach_kprobe_multi(): (pattern, retprobe) of a kprobe.multi/ or
    kretprobe.multi/ section; None for the bare sections (not auto-attached)."""
    if section in ("kprobe.multi", "kretprobe.multi"):
        return None
    retprobe = section.startswith("kretprobe.multi/")
    tail = section[len("kretprobe.multi/" if retprobe else "kprobe.multi/"):]
    match = _PATTERN.match(tail)
    pattern = match.group(0) if match else ""
    if not pattern:
        raise LoaderError(f"kprobe multi pattern is invalid: {tail!r}")
    return pattern, retprobe


def attach(obj: LoadedObject, prog: LoadedProgram) -> Link | None:
    """attach_kprobe_multi() → bpf_program__attach_kprobe_multi_opts() with a pattern."""
    where = f"prog '{prog.spec.name}' ({prog.spec.section})"
    try:
        found = section_pattern(prog.spec.section)
    except LoaderError as e:
        raise LoaderError(f"{where}: {e}") from e
    if found is None:
        return None
    pattern, retprobe = found
    try:
        with open(KALLSYMS) as f:
            addresses = resolve(pattern, f)
    except OSError as e:
        raise LoaderError(f"{where}: failed to open {KALLSYMS}: {e.strerror}") from e
    except LoaderError as e:
        raise LoaderError(f"{where}: {e}") from e
    if not addresses:
        raise LoaderError(f"{where}: no kernel symbol matches '{pattern}' in {KALLSYMS} "
                          f"({errno_codes.errorcode[errno_codes.ENOENT]})")
    keep = bsys.Buffers()
    attr = bpfcalls.Attr(bpfcalls.BPF_LINK_CREATE, bpfcalls.LINK_CREATE_SIZE)
    attr.set("prog_fd", prog.fd).set("target_fd", 0)
    attr.set("attach_type", BPF_TRACE_KPROBE_MULTI).set("flags", 0)
    attr.set("kprobe_multi.flags", BPF_F_KPROBE_MULTI_RETURN if retprobe else 0)
    attr.set("kprobe_multi.cnt", len(addresses))
    attr.set("kprobe_multi.addrs",
             keep.bytes_at(struct.pack(f"<{len(addresses)}Q", *addresses)))
    try:
        fd = attr.call()
    except OSError as e:
        raise LoaderError(f"{where}: failed to attach: {e.strerror}") from e
    kind = "kretprobe.multi" if retprobe else "kprobe.multi"
    return Link(prog.spec.name, "link", fd, target=f"{kind} {pattern} "
                f"({len(addresses)} functions)")
