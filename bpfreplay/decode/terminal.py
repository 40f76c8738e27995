"""Text from a trace or an object made safe for a terminal: control characters escaped
the way ``strace -x`` shows them (``\\x1b``, ``\\n``), so that a crafted map name, path or
log cannot move the cursor, change colours or fake a line of output. Pure."""

from __future__ import annotations

import re

# C0 controls, DEL, C1 controls (0x9b is a CSI on some terminals), the Unicode line
# and bidirectional-override controls, and surrogates (bytes that were not UTF-8).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
                     "\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\v": "\\v", "\f": "\\f"}


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def escape_control(text: str) -> str:
    """``text`` with every control character written as an escape; unchanged (the same
    object) when it has none."""
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_escape_one, text)


def escape_lines(text: str) -> str:
    """``text`` escaped line by line: its own newlines kept, every other control
    character escaped (for messages of several lines)."""
    return "\n".join(escape_control(line) for line in text.split("\n"))


class EscapingWriter:
    """A text stream that escapes control characters (newlines kept) before writing:
    for reports that print names and logs taken from a trace."""

    def __init__(self, out) -> None:  # noqa: ANN001 - any TextIO
        self._out = out

    def write(self, text: str) -> int:
        return self._out.write(escape_lines(text))

    def flush(self) -> None:
        self._out.flush()
