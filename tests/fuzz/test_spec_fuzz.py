"""Fuzz harness of the spec stage: mutated corpus objects through load_spec().

Every eBPF object the suite builds (tests/corpus/build, tests/data/*/build) is mutated
-- byte flips anywhere or inside one section (.BTF, .BTF.ext, .symtab, a relocation
section, ...), truncations, edits of a section header field, of a symbol's field or
of a relocation entry, extreme integers -- and read with load_spec(); an object that
reads is then relocated (CO-RE against the running kernel's BTF included). Any
exception that is not a BpfReplayError fails, and so does a case that takes over 10 s.

Bounded in ``make test`` (BPFREPLAY_FUZZ_EXAMPLES, default 1500, derandomised: the same
cases every run); long by hand with ``make fuzz`` (20,000+ random cases; the figures of
the last long run are in docs/robustness.md).
"""

from __future__ import annotations

import os
import resource
import signal
import struct
import time
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bpfreplay.decode.btf import Btf, parse_btf  # noqa: E402
from bpfreplay.errors import BpfReplayError  # noqa: E402
from bpfreplay.loader.relocate import relocate_object  # noqa: E402
from bpfreplay.loader.spec import load_spec  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("BPFREPLAY_FUZZ_EXAMPLES", "1500"))
LONG = EXAMPLES > 2000
CASE_TIMEOUT_S = 10


@cache
def corpus() -> tuple[tuple[str, bytes], ...]:
    files = sorted([*ROOT.glob("tests/corpus/build/*.bpf.o"),
                    *ROOT.glob("tests/data/*/build/*.bpf.o")])
    return tuple((str(f.relative_to(ROOT)), f.read_bytes()) for f in files)


def sections(data: bytes) -> list[tuple[int, int, int, int, str]]:
    """(header offset, type, data offset, size, name) of each section of a clean object."""
    shoff, = struct.unpack_from("<Q", data, 40)
    shnum, shstrndx = struct.unpack_from("<HH", data, 60)
    heads = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * 64) for i in range(shnum)]
    names_off, names_size = heads[shstrndx][4], heads[shstrndx][5]
    names = data[names_off:names_off + names_size]
    out = []
    for i, h in enumerate(heads):
        end = names.find(b"\0", h[0])
        out.append((shoff + i * 64, h[1], h[4], h[5], names[h[0]:end].decode("latin-1")))
    return out


# Extreme and boundary integers an attacker would write into a field.
INTS = st.one_of(
    st.sampled_from([0, 1, 2, 3, 4, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0xFFFF, 0x10000,
                     0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x100000000, 2**63 - 1, 2**63,
                     2**64 - 1]),
    st.integers(0, 2**64 - 1),
    st.integers(0, 4096),
)
# Section header fields: (offset in the header, width).
SHDR_FIELDS = [(0, 4), (4, 4), (8, 8), (24, 8), (32, 8), (40, 4), (44, 4), (48, 8), (56, 8)]
# Symbol fields: name, info, other, shndx, value, size.
SYM_FIELDS = [(0, 4), (4, 1), (5, 1), (6, 2), (8, 8), (16, 8)]


def put(buf: bytearray, off: int, width: int, value: int) -> None:
    if off + width <= len(buf):
        buf[off:off + width] = (value % (1 << (8 * width))).to_bytes(width, "little")


@st.composite
def mutation(draw: st.DrawFn) -> tuple[str, bytes, list[str]]:
    name, data = draw(st.sampled_from(corpus()))
    secs = sections(data)
    buf = bytearray(data)
    done: list[str] = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "section_bytes", "section_bytes", "shdr",
                                     "symbol", "reloc", "int_in_section", "truncate"]))
        if kind == "flip":
            off = draw(st.integers(0, len(buf) - 1))
            buf[off] ^= draw(st.integers(1, 255))
            done.append(f"flip byte {off}")
        elif kind == "truncate":
            cut = draw(st.integers(0, len(buf)))
            del buf[cut:]
            done.append(f"truncate to {cut}")
            break
        elif kind == "shdr":
            hoff, *_rest, sname = draw(st.sampled_from(secs))
            foff, width = draw(st.sampled_from(SHDR_FIELDS))
            value = draw(INTS)
            put(buf, hoff + foff, width, value)
            done.append(f"section {sname} header +{foff} = {value:#x}")
        elif kind == "symbol":
            symtabs = [s for s in secs if s[1] == 2]
            if not symtabs or symtabs[0][3] < 24:
                continue
            _h, _t, soff, ssize, _n = symtabs[0]
            index = draw(st.integers(0, ssize // 24 - 1))
            foff, width = draw(st.sampled_from(SYM_FIELDS))
            value = draw(INTS)
            put(buf, soff + index * 24 + foff, width, value)
            done.append(f"symbol #{index} +{foff} = {value:#x}")
        elif kind == "reloc":
            rels = [s for s in secs if s[1] == 9 and s[3] >= 16]
            if not rels:
                continue
            _h, _t, roff, rsize, rname = draw(st.sampled_from(rels))
            index = draw(st.integers(0, rsize // 16 - 1))
            foff, width = draw(st.sampled_from([(0, 8), (8, 4), (12, 4)]))
            value = draw(INTS)
            put(buf, roff + index * 16 + foff, width, value)
            done.append(f"{rname} entry #{index} +{foff} = {value:#x}")
        else:
            with_data = [s for s in secs if s[3] > 0 and s[1] != 8]
            preferred = [s for s in with_data if s[4] in (".BTF", ".BTF.ext", ".symtab",
                                                           ".maps", ".strtab", ".kconfig")
                         or s[1] == 9]
            _h, _t, doff, dsize, sname = draw(st.sampled_from(preferred or with_data))
            if kind == "section_bytes":
                off = doff + draw(st.integers(0, dsize - 1))
                buf[off] ^= draw(st.integers(1, 255))
                done.append(f"{sname} flip byte {off - doff}")
            else:
                width = draw(st.sampled_from([1, 2, 4, 8]))
                off = doff + draw(st.integers(0, max(0, dsize - width))) // width * width
                value = draw(INTS)
                put(buf, off, width, value)
                done.append(f"{sname} u{width * 8} at {off - doff} = {value:#x}")
    return name, bytes(buf), done


class CaseTimeout(Exception):
    pass


def _alarm(_sig: int, _frame: object) -> None:
    raise CaseTimeout(f"a case took over {CASE_TIMEOUT_S} s")


@cache
def vmlinux_btf() -> Btf | None:
    try:
        return parse_btf(Path("/sys/kernel/btf/vmlinux").read_bytes())
    except OSError:
        return None


# Outcomes of the cases run in this process (printed by test_summary in a long run).
OUTCOMES: Counter[str] = Counter()
SLOWEST = [0.0]


def check(name: str, data: bytes, done: list[str]) -> None:
    """load_spec(), then (when it succeeds) the relocation of every program against
    the running kernel's BTF with made-up map fds: the pure part of a load."""
    target = vmlinux_btf()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_TIMEOUT_S)
    start = time.monotonic()
    try:
        spec = load_spec(data, name=Path(name).name.split(".")[0])
        OUTCOMES["spec read"] += 1
        relocate_object(spec, [100 + i for i in range(len(spec.maps))], target_btf=target,
                        ksyms={})
        OUTCOMES["relocated"] += 1
    except BpfReplayError:
        OUTCOMES["refused (BpfReplayError)"] += 1
    except Exception as e:
        OUTCOMES["failed"] += 1
        raise AssertionError(f"{name} with {done}: {type(e).__name__}: {e}") from e
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        SLOWEST[0] = max(SLOWEST[0], time.monotonic() - start)


def test_corpus_present() -> None:
    assert len(corpus()) >= 20, "build the corpus first (make testprogs)"


@settings(max_examples=EXAMPLES, deadline=None, derandomize=not LONG, database=None,
          suppress_health_check=list(HealthCheck))
@given(mutation())
def test_spec_stage_mutated(case: tuple[str, bytes, list[str]]) -> None:
    check(*case)


def test_summary() -> None:
    """The figures of this run (``make fuzz`` shows them: pytest -s)."""
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nspec-stage fuzz: {sum(OUTCOMES.values())} cases over {len(corpus())} objects:"
          f" {dict(OUTCOMES)}; slowest case {SLOWEST[0]:.3f} s; peak RSS {peak_mib:.0f} MiB")
    assert not OUTCOMES["failed"]
