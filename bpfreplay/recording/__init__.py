"""Helpers of ``bpfreplay.record``: the seccomp filter, spawning the tracee under
ptrace, reading its memory and knowing what its fds are."""
