"""What an application does after the load: ring-buffer and perf-buffer consumers
(``ringbuf``, ``perfbuf``), the records they read made text (``events``). The Python
API (``bpfreplay.api``) and ``bpfreplay run`` stand on these modules."""
