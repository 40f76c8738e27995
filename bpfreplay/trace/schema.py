"""Names shared by the trace writer and reader (the schema is in docs/trace-format.md)."""

FORMAT_NAME = "bpfreplay-trace"
FORMAT_VERSION = 1

# Record types that follow the header.
CALL = "call"        # one recorded syscall
PROCESS = "process"  # first sight of a traced process: exe, libbpf it mapped
EXIT = "exit"        # a traced process ended
