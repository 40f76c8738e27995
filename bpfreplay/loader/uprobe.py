"""Uprobes, attached as libbpf 1.1.2 attaches ``SEC("uprobe/BINARY:FUNCTION[+OFFSET]")``:
the binary found on PATH (programs) or the library paths (``.so``), the function's
file offset read from its ELF symbols, then perf_event_open on the uprobe PMU (path in
config1, offset in config2, the retprobe bit for uretprobes) and a BPF perf link.
The legacy tracefs uprobe_events interface is not used: it needs no uprobe PMU, and
this kernel has one. A target ``/proc/self/exe`` names the attaching process's program;
in ours that is the Python interpreter, so the program it stands for is given
(``self_exe_standing_for``, `bpfreplay run --self-exe`): its ELF gives the offset, its
path goes to perf_event_open."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

from bpfreplay.errors import LoaderError

UPROBE_PMU = "/sys/bus/event_source/devices/uprobe"
# sscanf(sec, "%m[^/]/%m[^:]:%m[a-zA-Z0-9_.]+%li")
_SECTION = re.compile(r"^([^/]+)/([^:]+):([a-zA-Z0-9_.]+)(?:\+(-?(?:0[xX][0-9a-fA-F]+|"
                      r"0[0-7]*|[1-9][0-9]*)))?")
_ARCH_LIB_PATHS = {"x86_64": "/lib/x86_64-linux-gnu", "aarch64": "/lib/aarch64-linux-gnu",
                   "i686": "/lib/i386-linux-gnu", "s390x": "/lib/s390x-linux-gnu"}


SELF_EXE = "/proc/self/exe"
_self_exe: str | None = None  # the program /proc/self/exe stands for (run --self-exe)


@contextlib.contextmanager
def self_exe_standing_for(path: str | None) -> Iterator[None]:
    """While the block runs, a uprobe target ``/proc/self/exe`` means ``path``: the
    program whose process libbpf would have run in (in ours, /proc/self/exe is the
    Python interpreter). None: such a target is refused with the reason."""
    global _self_exe
    old, _self_exe = _self_exe, path
    try:
        yield
    finally:
        _self_exe = old


def _self_exe_path(binary: str) -> str:
    if binary != SELF_EXE:
        return binary
    if _self_exe is None:
        raise LoaderError(f"uprobe target '{SELF_EXE}' names the program of the process "
                          "that attaches it; in ours that is the Python interpreter, not "
                          "the program the section means: give it with `bpfreplay run "
                          "--self-exe PATH` (with --compare and a command, the default "
                          "is the reference's program)")
    return _self_exe


@dataclass(frozen=True)
class UprobeTarget:
    path: str
    function: str
    offset: int  # file offset of the function, plus the section's +OFFSET
    retprobe: bool


def parse_section(section: str) -> tuple[str, str, int, bool] | None:
    """(binary, function, offset, retprobe), or None for a bare ``uprobe`` section
    (valid, but nothing to auto-attach). LoaderError for other malformed names."""
    if "/" not in section:
        return None
    m = _SECTION.match(section)
    if m is None:
        raise LoaderError(f"section '{section}': expected uprobe/BINARY:FUNCTION[+OFFSET]")
    kind, binary, function, offset_text = m.groups()
    retprobe = kind in ("uretprobe", "uretprobe.s")
    offset = int(offset_text, 0) if offset_text else 0
    if retprobe and offset:
        raise LoaderError(f"section '{section}': uretprobes do not support an offset")
    return binary, function, offset, retprobe


def resolve_full_path(binary: str) -> str:
    """libbpf's resolve_full_path(): a library in LD_LIBRARY_PATH, /usr/lib64, /usr/lib
    or the architecture's /lib directory; a program in PATH, /usr/bin or /usr/sbin."""
    if "/" in binary:
        return binary
    if binary.endswith(".so") or ".so." in binary:
        searches = [os.environ.get("LD_LIBRARY_PATH"), "/usr/lib64:/usr/lib",
                    _ARCH_LIB_PATHS.get(os.uname().machine)]
        mode = os.R_OK
    else:
        searches = [os.environ.get("PATH"), "/usr/bin:/usr/sbin"]
        mode = os.R_OK | os.X_OK
    for search in searches:
        for directory in (search or "").split(":"):
            if directory and os.access(f"{directory}/{binary}", mode, effective_ids=True):
                return f"{directory}/{binary}"
    raise LoaderError(f"failed to resolve full path for '{binary}'")


def function_offset(path: str, name: str) -> int:
    """elf_find_func_offset(): the file offset of FUNC symbol ``name`` (or
    ``name@@LIB``), looked up in .dynsym then .symtab; one non-weak definition wins."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    qualified = "@@" in name
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            for table in (".dynsym", ".symtab"):
                section = elf.get_section_by_name(table)
                if section is None:
                    continue
                found, found_bind = -1, None
                for sym in section.iter_symbols():
                    if sym["st_info"]["type"] != "STT_FUNC":
                        continue
                    sname = sym.name
                    if not sname.startswith(name):
                        continue
                    rest = sname[len(name):]
                    if not qualified and rest and not rest.startswith("@"):
                        continue
                    bind = sym["st_info"]["bind"]
                    if found >= 0:
                        if found_bind != "STB_WEAK" and bind != "STB_WEAK":
                            raise LoaderError(f"elf: ambiguous match for '{sname}', '{name}' "
                                              f"in '{path}'")
                        if bind == "STB_WEAK":
                            continue
                    shndx = sym["st_shndx"]
                    if not isinstance(shndx, int):
                        continue
                    where = elf.get_section(shndx)
                    found = sym["st_value"] - where["sh_addr"] + where["sh_offset"]
                    found_bind = bind
                if found > 0:
                    return found
    except OSError as e:
        raise LoaderError(f"failed to open {path}: {e.strerror}") from e
    except ELFError as e:
        raise LoaderError(f"elf: could not read elf from {path}: {e}") from e
    raise LoaderError(f"elf: could not find function '{name}' in '{path}'")


def pmu_type() -> tuple[int, int]:
    """(perf type of the uprobe PMU, its retprobe config bit)."""
    try:
        with open(f"{UPROBE_PMU}/type") as f:
            perf_type = int(f.read())
        with open(f"{UPROBE_PMU}/format/retprobe") as f:
            bit = int(f.read().strip().removeprefix("config:"))
    except (OSError, ValueError) as e:
        raise LoaderError(f"no uprobe PMU ({UPROBE_PMU}): {e}") from e
    return perf_type, bit


def target(section: str) -> UprobeTarget | None:
    parsed = parse_section(section)
    if parsed is None:
        return None
    binary, function, offset, retprobe = parsed
    path = resolve_full_path(_self_exe_path(binary))
    return UprobeTarget(path, function, function_offset(path, function) + offset, retprobe)
