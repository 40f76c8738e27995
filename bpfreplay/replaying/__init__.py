"""``bpfreplay replay``'s parts: what each recorded call becomes here (fds, ids, pids,
paths remapped: ``remap``, ``buffers``, ``perf``), the state of what the replay made
and its teardown (``objects``), the walk over the trace (``engine``) and the report
(``report``). The command itself is bpfreplay/replay.py."""
