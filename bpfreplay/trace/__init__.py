"""The trace file: a msgpack stream of one header and then one record per event.

See docs/trace-format.md for the schema. ``TraceWriter`` writes and flushes each
record as it comes; ``read_trace`` reads a file back and tolerates a truncated tail.
"""

from bpfreplay.trace.reader import Trace, read_trace
from bpfreplay.trace.schema import FORMAT_NAME, FORMAT_VERSION, READABLE_VERSIONS
from bpfreplay.trace.writer import TraceWriter

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "READABLE_VERSIONS", "Trace", "TraceWriter",
           "read_trace"]
