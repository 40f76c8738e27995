#!/bin/bash
# The matrix's job inside ONE guest (run by matrix.py through run-in-kernel.sh): the
# demo (libbpf's reference recorded here, then `bpfreplay run --compare` against it),
# the host's recording replayed on this kernel, and the kernel-facing tests. Each step
# writes its output (also to the console, live) and exit status into OUT, which the host reads afterwards; a step
# that fails does not stop the others.
#
#   guest-matrix.sh OUT HOST_TRACE TEST_FILE...
#     OUT/guest.mp        the reference minimal recorded on this kernel (for the host)
#     OUT/demo.txt .rc    run --compare against it
#     OUT/replay.json .txt .rc  `bpfreplay replay --json HOST_TRACE` (stderr in .txt)
#   (the host checks replay.json against guest.mp afterwards: crosscheck.py is pure)
#     OUT/tests.xml .txt .rc  pytest of TEST_FILE... (junit XML)
#     OUT/kernel          uname -r
set -u
out=$1 host_trace=$2
shift 2
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 2
BIN=.venv/bin
export PYTHONUNBUFFERED=1 # live progress on the console
REF=reference/libbpf-bootstrap
uname -r > "$out/kernel"

step() { # step NAME COMMAND...: output to OUT/NAME.txt, status to OUT/NAME.rc
	local name=$1; shift
	echo "== $name: $*"
	local start=$SECONDS
	"$@" < /dev/null 2>&1 | tee "$out/$name.txt"
	local rc=${PIPESTATUS[0]}
	echo "$rc" > "$out/$name.rc"
	echo "== $name: exit $rc in $((SECONDS - start)) s"
}

step record "$BIN/bpfreplay" record -o "$out/guest.mp" -- "$REF/minimal" 2
step demo "$BIN/bpfreplay" run "$REF/minimal.bpf.o" --duration 3 --compare "$out/guest.mp"
replay_json() { "$BIN/bpfreplay" replay --json "$host_trace" > "$out/replay.json"; }
step replay replay_json
step tests "$BIN/pytest" -q -p no:cacheprovider -rfEs --durations=15 --junitxml="$out/tests.xml" "$@"
exit 0
