"""The fuzz harnesses (tests/fuzz/harness.py) as hypothesis tests: a few examples each
in ``make test``, >= 20,000 each with ``make fuzz`` (docs/robustness.md)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz import harness
from tests.fuzz.conftest import EXAMPLES

FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
                suppress_health_check=list(HealthCheck), print_blob=True)


def test_trace_reader(seeds):
    with tempfile.TemporaryDirectory(prefix="bpfreplay-fuzz-") as tmp:
        @FUZZ
        @given(data=harness.mutated(seeds))
        def run(data: bytes) -> None:
            path = harness.write(Path(tmp), "t.mp", data)
            with harness.case("trace reader"):
                harness.read_all(path)

        run()


def test_explain_every_mode(seeds):
    with tempfile.TemporaryDirectory(prefix="bpfreplay-fuzz-") as tmp:
        @FUZZ
        @given(data=harness.mutated(seeds), mode=st.sampled_from(harness.EXPLAIN_MODES))
        def run(data: bytes, mode: tuple[str, ...]) -> None:
            path = harness.write(Path(tmp), "t.mp", data)
            with harness.case("explain", " ".join(mode)):
                harness.explain(path, mode, Path(tmp) / "extract")

        run()


def test_compare_mutated_pairs(seeds):
    pairs = harness.seed_pairs(seeds)
    with tempfile.TemporaryDirectory(prefix="bpfreplay-fuzz-") as tmp:
        @FUZZ
        @given(pair=st.sampled_from(range(len(pairs))), which=st.sampled_from(
            ["reference", "ours", "both"]), data=st.data())
        def run(pair: int, which: str, data: st.DataObject) -> None:
            reference, ours = pairs[pair]
            a = data.draw(harness.mutated([reference])) if which != "ours" else reference.data
            b = data.draw(harness.mutated([ours])) if which != "reference" else ours.data
            with harness.case("compare", f"{reference.name} {which}"):
                harness.compare(harness.write(Path(tmp), "a.mp", a),
                                harness.write(Path(tmp), "b.mp", b))

        run()
