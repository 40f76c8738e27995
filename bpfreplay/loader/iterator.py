"""BPF iterators (``SEC("iter/<target>")``, ``SEC("iter.s/<target>")``): attaching them
as a skeleton's auto-attach does, and reading them as an application does.

Attach (libbpf 1.1.2 attach_iter() → bpf_program__attach_iter(prog, NULL) →
bpf_link_create()): one BPF_LINK_CREATE of 48 bytes with the program's fd, target_fd 0,
attach_type BPF_TRACE_ITER, flags 0 and, with no options (auto-attach passes none), no
iter_info: the iterator walks everything of its kind (all tasks, all maps). The
program was loaded against the kernel's ``bpf_iter_<target>`` BTF function.

Read (libbpf-bootstrap's task_iter application): bpf_iter_create(link fd) makes a new
fd for one walk (BPF_ITER_CREATE), read() returns what the program wrote with
bpf_seq_printf / bpf_seq_write until it returns 0, and the fd is closed right after.
Each read makes a new walk; the link stays until teardown.
"""

from __future__ import annotations

import errno as errno_codes
from typing import TextIO

from bpfreplay import sys as bsys
from bpfreplay.errors import LoaderError
from bpfreplay.loader import bpfcalls
from bpfreplay.loader.kernel import Link, LoadedObject, LoadedProgram, _close_quietly
from bpfreplay.uapi import enum_values

BPF_TRACE_ITER = enum_values("bpf_attach_type")["BPF_TRACE_ITER"]
LINK_KIND = "iter"
READ_SIZE = 4096  # bytes asked of each read(); the kernel's seq_file hands out at most that


def attach_iter(obj: LoadedObject, prog: LoadedProgram) -> Link:
    """bpf_program__attach_iter() without options: a BPF_TRACE_ITER link, target 0."""
    try:
        fd = bpfcalls.link_create(prog.fd, 0, BPF_TRACE_ITER)
    except OSError as e:
        raise LoaderError(f"prog '{prog.spec.name}' ({prog.spec.section}): failed to attach "
                          f"to iterator: {e.strerror}") from e
    return Link(prog.spec.name, LINK_KIND, fd, target=prog.spec.section.split("/", 1)[-1])


def iterator_links(obj: LoadedObject) -> list[Link]:
    """The object's iterator links, in attach order (the skeleton's program order)."""
    return [link for link in obj.links if link.kind == LINK_KIND]


def read_iterator(obj: LoadedObject, link: Link) -> bytes:
    """One walk of the iterator behind ``link``: BPF_ITER_CREATE, read() until it returns
    0 (again on EAGAIN/EINTR), close; everything the program wrote."""
    try:
        fd = bpfcalls.iter_create(link.fd)
    except OSError as e:
        raise LoaderError(f"prog '{link.program}': creating an iterator from its link "
                          f"(iter/{link.target}) failed: {e.strerror}") from e
    chunks = []
    try:
        while True:
            try:
                chunk = bsys.read(fd, READ_SIZE)
            except OSError as e:
                if e.errno in (errno_codes.EAGAIN, errno_codes.EINTR):
                    continue
                raise LoaderError(f"prog '{link.program}': reading iterator iter/"
                                  f"{link.target} failed: {e.strerror}") from e
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        _close_quietly(fd)


def is_text(data: bytes) -> bool:
    """Whether an iterator wrote text: UTF-8 with no control characters other than tab,
    newline and carriage return."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return False
    return all(c >= " " or c in "\t\n\r" for c in text)


def hex_dump(data: bytes, width: int = 16) -> str:
    """``hexdump -C``'s layout: offset, 16 bytes in two groups of 8, printable ASCII; a
    last line with the length (nothing at all for no bytes)."""
    if not data:
        return ""
    lines = []
    for offset in range(0, len(data), width):
        row = data[offset:offset + width]
        cells = [f"{b:02x}" for b in row] + ["  "] * (width - len(row))
        half = width // 2
        ascii_text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in row)
        lines.append(f"{offset:08x}  {' '.join(cells[:half])}  {' '.join(cells[half:])}  "
                     f"|{ascii_text}|")
    lines.append(f"{len(data):08x}")
    return "\n".join(lines) + "\n"


def print_iterators(obj: LoadedObject, out: TextIO, notes: TextIO) -> None:
    """Read each iterator of ``obj`` once, in order, and print what it wrote to ``out``
    (text as text, anything else as a hex dump); a line about each on ``notes``."""
    for link in iterator_links(obj):
        data = read_iterator(obj, link)
        text = is_text(data)
        print(f"bpfreplay: iterator {link.program} (iter/{link.target}): {len(data)} bytes"
              + ("" if text or not data else ", binary: hex dump"), file=notes)
        out.write(data.decode() if text else hex_dump(data))
        out.flush()
