"""The pure-Python libbpf: an eBPF object loaded the way libbpf 1.1.2 loads it.

Spec stage (pure, no syscalls; same output on any machine):
    spec.load_spec(path_or_bytes, name=None) -> spec.ObjectSpec
    relocate.relocate_program(obj, program, map_fds, ...) -> relocate.RelocatedProgram

Kernel stage (kernel.py and friends): feature probes, BTF load, maps, program loads,
attach, teardown, built on the spec stage.
"""
