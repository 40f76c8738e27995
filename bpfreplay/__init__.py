"""bpfreplay: record, explain and reproduce how an eBPF program gets into the kernel."""

__version__ = "0.1.0"
