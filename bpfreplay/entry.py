"""The console entry point (pyproject's [project.scripts]): Ctrl-C handling first,
everything heavy after.

From its first statement on, Ctrl-C never ends the process in a traceback: during the
imports, a command's work or the final error message it exits 130 (the shell's status
for "killed by SIGINT"); a command that ends normally on Ctrl-C (record: the tracee's
status; run while streaming) catches it itself and returns its own status. Once the
command has returned, SIGINT is ignored so that nothing of the exit can be cut short.
"""

import os
import signal
import sys

INTERRUPTED = 130
# Seconds to sleep before importing the command line: lets tests send SIGINT "during the
# imports" at a moment they control. Only tests set it.
_IMPORT_DELAY_ENV = "BPFREPLAY_TEST_IMPORT_DELAY"


def main() -> int:
    try:
        try:
            if signal.getsignal(signal.SIGINT) is signal.SIG_DFL:
                # (Python installs its KeyboardInterrupt handler unless SIGINT was ignored
                # when it started, and then it stays ignored, as a shell's `cmd &` wants.)
                signal.signal(signal.SIGINT, signal.default_int_handler)
            if sys.argv[1:] == ["--version"]:
                # What argparse's version action prints, without argparse (its import
                # and the parser are most of what --version would cost).
                from bpfreplay import __version__

                print(f"bpfreplay {__version__}")
                return 0
            delay = os.environ.get(_IMPORT_DELAY_ENV)
            if delay:
                import time

                time.sleep(float(delay))
            from bpfreplay.cli import main as cli_main

            status = cli_main()
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            sys.stderr.write("\nbpfreplay: interrupted\n")
        except (OSError, ValueError):
            pass
        status = INTERRUPTED
    return status


if __name__ == "__main__":
    sys.exit(main())
