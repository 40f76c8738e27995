#!/bin/bash
# Our loader against libbpf on a kernel with module BTFs: boots Debian's kernel
# (tools/kernel-matrix/run-in-kernel.sh), loads the modules record.sh loaded, and runs
# `bpfreplay run X.bpf.o --compare X.mp` for each recorded object, so that ours walks
# the same module BTFs libbpf walked there. Prints each report's outcome line and exits
# non-zero unless every object reaches the parity its recording had (status.txt).
#
#   tests/data/module_btf/compare.sh [SERIES]      (default 6.1; run on the host, root)
set -eu
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
OBJS="core_module core_vmlinux kfunc_module fentry_module tp_btf_module"

if [ "${1:-}" != --in-guest ]; then
	series=${1:-6.1}
	dir=$HERE
	[ "$series" = 6.1 ] || dir=$HERE/$series
	exec "$ROOT/tools/kernel-matrix/run-in-kernel.sh" "$series" -- "$HERE/compare.sh" --in-guest "$dir"
fi

# --- in the guest: the modules of record.sh, then each comparison ---
DIR=$2
K=/lib/modules/$(uname -r)/kernel
for m in crypto/crc32c_generic lib/libcrc32c net/ipv4/netfilter/nf_defrag_ipv4 \
	net/ipv6/netfilter/nf_defrag_ipv6 net/netfilter/nf_conntrack; do
	f=$(ls "$K/$m.ko" "$K/$m.ko.xz" 2> /dev/null | head -1)
	[ -n "$f" ] && busybox insmod "$f"
done
rc=0
for o in $OBJS; do
	[ -f "$DIR/$o.mp" ] || continue
	out=$(mktemp)
	status=0
	"$ROOT/.venv/bin/bpfreplay" run "$DIR/$o.bpf.o" --duration 0.3 --compare "$DIR/$o.mp" \
		> "$out" 2>&1 || status=$?
	echo "== $o: exit $status"
	grep -E '^parity: (FULL PARITY|PARITY OF A FAILED LOAD|[0-9]+ difference|.*calls identical|module-BTF)' "$out" || true
	if [ "$status" != 0 ] && [ "$status" != 3 ]; then
		sed -n '/difference(s)/,$p' "$out" | head -40
		rc=1
	fi
	rm -f "$out"
done
exit $rc
