"""The one exception hierarchy of bpfreplay.

Messages say what was being done and to what; the CLI prints them without a
traceback (``--debug`` shows one).
"""


class BpfReplayError(Exception):
    """Base of every error bpfreplay raises on purpose."""


class DecodeError(BpfReplayError):
    """Bytes that do not decode: a corrupt attr, BTF blob or instruction buffer."""


class TraceFormatError(BpfReplayError):
    """A trace file that is not ours, of an unknown version, or corrupt."""


class RecordError(BpfReplayError):
    """Starting, tracing or ending a recorded program failed."""


class LoaderError(BpfReplayError):
    """Parsing or loading an eBPF object failed."""
