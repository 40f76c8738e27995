"""bpfreplay: record, explain and reproduce how an eBPF program gets into the kernel."""

from bpfreplay.api import Object, load  # the Python API (api.py imports nothing heavy)

__version__ = "0.1.0"
__all__ = ["Object", "load"]
