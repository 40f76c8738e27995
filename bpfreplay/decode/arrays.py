"""Arrays an attr points to, shown as strace shows them: a ``char **`` as its strings
(``["do_unlinkat", "do_sys_openat2"]``), a ``__u64 *`` as numbers (``[0x100, 0x101]``).

Which fields are which is the uapi's (``uapi.pointers.STRING_ARRAYS`` and
``U64_ARRAYS`` below); the strings are what the recorder followed (trace format 2: the
payload ``<field>.strings``). An element whose string was not recorded (a version-1
trace, an unreadable pointer) shows as the pointer, as strace shows one it cannot read.
"""

from __future__ import annotations

from bpfreplay.decode.attr_fields import c_string

# __u64 arrays of cnt elements: kprobe addresses and cookies, uprobe offsets and cookies.
U64_ARRAYS = frozenset({"kprobe_multi.addrs", "kprobe_multi.cookies", "uprobe_multi.offsets",
                        "uprobe_multi.ref_ctr_offsets", "uprobe_multi.cookies"})
# Elements shown in the one-line view before "..." (the -v section lists them all).
SHORT_ITEMS = 32  # strace's default -s (its array limit too)


def u64_items(data: bytes) -> list[str]:
    return [f"{int.from_bytes(data[i:i + 8], 'little'):#x}" for i in range(0, len(data) - 7, 8)]


def string_items(array: bytes, strings: bytes | None) -> list[str]:
    """One text per element of a ``char **`` array: its quoted string where recorded,
    else the pointer (``NULL`` for 0)."""
    texts = strings.split(b"\0")[:-1] if strings else []
    items = []
    for i in range(len(array) // 8):
        if i < len(texts):
            items.append(c_string(texts[i] + b"\0"))
            continue
        pointer = int.from_bytes(array[i * 8:i * 8 + 8], "little")
        items.append(f"{pointer:#x}" if pointer else "NULL")
    return items


def array_text(items: list[str], limit: int | None = SHORT_ITEMS) -> str:
    """``[a, b, ...]``: at most ``limit`` items, then how many more."""
    if limit is not None and len(items) > limit:
        return "[" + ", ".join(items[:limit]) + f", ... {len(items) - limit} more]"
    return "[" + ", ".join(items) + "]"


__all__ = ["SHORT_ITEMS", "U64_ARRAYS", "array_text", "string_items", "u64_items"]
