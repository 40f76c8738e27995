"""The verifier's statistics in a BPF_PROG_LOAD log: the line the kernel ends every log
with (kernel/bpf/verifier.c print_verification_stats: ``processed N insns (limit L)
max_states_per_insn M total_states T peak_states P mark_read R``), and with log_level's
BPF_LOG_STATS bit (4) the ``verification time`` and ``stack depth`` lines before it.

Pure: the log's bytes in, the numbers out; a log without the line gives None. The
names after the limit are read as the kernel wrote them (kernels add and drop some,
mark_read among them), not from a fixed list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_PROCESSED = re.compile(rb"^processed (\d+) insns \(limit (\d+)\)((?: \w+ -?\d+)*) *$", re.M)
_PAIR = re.compile(rb"(\w+) (-?\d+)")
_TIME = re.compile(rb"^verification time (\d+) usec *$", re.M)
_STACK = re.compile(rb"^stack depth ([\d+]*) *$", re.M)


@dataclass(frozen=True)
class VerifierStats:
    line: str                  # the kernel's line, as it wrote it
    processed: int             # instructions processed
    limit: int                 # the complexity limit in force
    counters: dict[str, int] = field(default_factory=dict)  # max_states_per_insn, ...
    time_usec: int | None = None
    stack_depth: str | None = None  # "0", "8+16": one per subprogram

    def text(self) -> str:
        """The line, then the BPF_LOG_STATS lines when the log had them."""
        extra = []
        if self.time_usec is not None:
            extra.append(f"verification time {self.time_usec} usec")
        if self.stack_depth is not None:
            extra.append(f"stack depth {self.stack_depth}")
        return "; ".join([self.line] + extra)

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {"processed": self.processed, "limit": self.limit,
                                  **self.counters}
        if self.time_usec is not None:
            out["verification_time_usec"] = self.time_usec
        if self.stack_depth is not None:
            out["stack_depth"] = self.stack_depth
        return out


def verifier_stats(log: bytes | None) -> VerifierStats | None:
    """The statistics of the last verification in ``log`` (a truncated or rotated log
    may miss them: None)."""
    if not log:
        return None
    matches = list(_PROCESSED.finditer(log))
    if not matches:
        return None
    found = matches[-1]
    counters = {k.decode(): int(v) for k, v in _PAIR.findall(found[3])}
    before = log[:found.start()]
    times = _TIME.findall(before)
    stacks = _STACK.findall(before)
    return VerifierStats(found[0].decode().rstrip(), int(found[1]), int(found[2]), counters,
                         int(times[-1]) if times else None,
                         stacks[-1].decode() if stacks else None)
