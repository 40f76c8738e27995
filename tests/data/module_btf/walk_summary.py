"""Summarise libbpf's module-BTF walk (libbpf 1.1.2 load_module_btfs() and the
btf_get_from_fd() it calls for each kernel module BTF) in recorded traces.

    python tests/data/module_btf/walk_summary.py [TRACE.mp ...]   (default: all here)

Prints, per trace, the walk's first and last call and one line per BTF object id the
walk visited: its BTF_GET_FD_BY_ID call, each BPF_OBJ_GET_INFO_BY_FD on that fd with
what the caller asked for (a name buffer, or a btf buffer of N bytes) and what the
kernel answered (btf_size, kernel_btf), and a close if libbpf dropped it. Names come
from the kernel.txt beside each trace (the guest's `bpftool btf list`), since traces
keep the info struct but not the name/btf buffers it points to. record.sh writes the
output to walk.txt.
"""

from __future__ import annotations

import re
import struct
import sys
from pathlib import Path

from bpfreplay.trace.reader import read_trace
from bpfreplay.uapi import cmd_value

HERE = Path(__file__).resolve().parent
NEXT_ID = cmd_value("BPF_BTF_GET_NEXT_ID")
FD_BY_ID = cmd_value("BPF_BTF_GET_FD_BY_ID")
INFO = cmd_value("BPF_OBJ_GET_INFO_BY_FD")


def btf_names(kernel_txt: Path) -> dict[int, str]:
    """BTF object id -> name from `bpftool btf list` lines ('7: name [9pnet] ...')."""
    names: dict[int, str] = {}
    for line in kernel_txt.read_text().splitlines():
        m = re.match(r"(\d+): name \[(\S+)\]", line)
        if m:
            names[int(m.group(1))] = m.group(2)
    return names


def info_fields(info: bytes) -> tuple[int, int, int]:
    """(btf_size, name_len, kernel_btf) of a struct bpf_btf_info (uapi layout:
    btf u64, btf_size u32, id u32, name u64, name_len u32, kernel_btf u32)."""
    btf_size, _id, _name, name_len, kernel_btf = struct.unpack_from("<IIQII", info, 8)
    return btf_size, name_len, kernel_btf


def summarise(trace_path: Path, names: dict[int, str]) -> list[str]:
    calls = [r for r in read_trace(str(trace_path)).records() if r.get("type") == "call"]
    walk = [r for r in calls if r.get("syscall") == "bpf" and r.get("cmd") in (NEXT_ID, FD_BY_ID)]
    if not walk:
        return [f"{trace_path.name}: no module BTF walk (no BTF_GET_NEXT_ID/BTF_GET_FD_BY_ID call)"]
    first, last = walk[0]["index"], walk[-1]["index"]
    lines = [f"{trace_path.name}: walk #{first}..#{last}"]
    fds: set[int] = set()
    line = ""
    for r in calls:
        if not first <= r["index"] <= last:
            continue
        if r.get("syscall") == "close" and r["args"][0] in fds:
            line += f"; close #{r['index']}"
            fds.discard(r["args"][0])
        elif r.get("cmd") == NEXT_ID:
            if line:
                lines.append(line)
            result = f"= {r['ret']}" if r["errno"] is None else "ENOENT (end)"
            line = f"  NEXT_ID #{r['index']} {result}"
        elif r.get("cmd") == FD_BY_ID:
            btf_id = struct.unpack_from("<I", r["attr"])[0]
            fds.add(r["ret"])
            name = names.get(btf_id, "not in kernel.txt")
            line += f"; id {btf_id} [{name}] FD_BY_ID #{r['index']} = fd {r['ret']}"
        elif r.get("cmd") == INFO:
            asked_size, name_len, _ = info_fields(r["in"]["info"])
            got_size, _, kernel_btf = info_fields(r["out"]["info"])
            asked = f"name[{name_len}]" if name_len else f"btf[{asked_size}]"
            line += f"; INFO #{r['index']} {asked} -> btf_size={got_size} kernel_btf={kernel_btf}"
    lines.append(line)
    return lines


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or sorted(HERE.glob("*.mp"))
    for p in paths:
        print("\n".join(summarise(p, btf_names(p.parent / "kernel.txt"))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
