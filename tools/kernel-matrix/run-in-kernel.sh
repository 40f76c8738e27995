#!/bin/bash
# Run ONE command on another Debian kernel, under qemu (TCG), in the host's own file
# system: the guest sees the host's root read-only over 9p (with a throw-away overlay
# on top), the project folder and any --rw folder read-write at the same paths, and
# the guest kernel's /lib/modules/$KVER and /boot. The command's output is printed
# (live) and its exit code becomes this script's.
#
#   tools/kernel-matrix/run-in-kernel.sh [OPTIONS] SERIES -- COMMAND [ARGS...]
#     SERIES        6.1 (bookworm), 6.12 (bookworm-backports) or 5.10 (bullseye)
#     --rw PATH     another read-write share (repeatable; the project is always one)
#     --mem SIZE    guest memory (default 1G)     --smp N  vCPUs (default 2)
#     --timeout S   kill the guest after S seconds (default 900)
#     --interactive the command gets the serial console as its terminal
#     --print-kver  prepare the kernel, print its release and exit
#
# Exit status: the command's, 125 when the guest did not report one (see the console
# log it prints), 2 for a usage or download error. Caches (downloads, unpacked
# packages, initramfs) are under $BPFREPLAY_KERNEL_CACHE (/var/cache/bpfreplay-kernels).
# Needs the host packages qemu-system-x86 and busybox-static. README.md beside this.
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROJECT=$(cd "$HERE/../.." && pwd)
# shellcheck source=kernels.sh
. "$HERE/kernels.sh"

MEM=1G SMP=2 TIMEOUT=900 INTERACTIVE=0 PRINT_KVER=0
RW=("$PROJECT")
while [ $# -gt 0 ]; do
	case $1 in
	--rw) RW+=("$(cd "$2" && pwd)") || exit 2; shift 2 ;;
	--mem) MEM=$2; shift 2 ;;
	--smp) SMP=$2; shift 2 ;;
	--timeout) TIMEOUT=$2; shift 2 ;;
	--interactive) INTERACTIVE=1; shift ;;
	--print-kver) PRINT_KVER=1; shift ;;
	--) shift; break ;;
	-*) km_die "unknown option $1" ;;
	*) SERIES=$1; shift ;;
	esac
done
[ -n "${SERIES:-}" ] || km_die "usage: run-in-kernel.sh [OPTIONS] SERIES -- COMMAND [ARGS...]"
[ $PRINT_KVER = 1 ] || [ $# -gt 0 ] || km_die "no command given (after --)"
command -v qemu-system-x86_64 > /dev/null || km_die "qemu-system-x86_64 is missing (apt-get install --no-install-recommends qemu-system-x86)"

kernel_prepare "$SERIES"
if [ $PRINT_KVER = 1 ]; then
	echo "$KVER"
	exit 0
fi

JOB=$(mktemp -d /tmp/bpfreplay-kjob.XXXXXX)
qpid="" tpid=""
# A killed or interrupted run ends its guest too (qemu in the background would
# otherwise keep running, TCG holding both cores): timeout(1) makes itself the leader
# of a process group holding qemu, and the EXIT trap ends that group.
km_cleanup() {
	if [ -n "$qpid" ] && kill -0 "$qpid" 2> /dev/null; then
		kill -TERM -- "-$qpid" 2> /dev/null || kill -TERM "$qpid" 2> /dev/null
		wait "$qpid" 2> /dev/null
	fi
	[ -n "$tpid" ] && kill "$tpid" 2> /dev/null
	rm -rf "$JOB"
}
trap km_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
echo "$JOB" > "$JOB/path"
echo "$KVER" > "$JOB/kver"
echo "$KDIR" > "$JOB/kdir"
printf '%s\n' "${RW[@]}" > "$JOB/mounts"
[ $INTERACTIVE = 1 ] && touch "$JOB/interactive"
{
	printf 'cd %q 2>/dev/null || cd /\n' "$PWD"
	printf 'exec'
	printf ' %q' "$@"
	printf '\n'
} > "$JOB/cmd"
: > "$JOB/out"

QEMU=(qemu-system-x86_64 -accel tcg -cpu max -smp "$SMP" -m "$MEM"
	-nodefaults -no-user-config -display none -no-reboot
	-kernel "$KDIR/boot/vmlinuz-$KVER" -initrd "$KDIR/initramfs.gz"
	-append "console=ttyS0 panic=-1 loglevel=4"
	-virtfs "local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap"
	-virtfs "local,path=$JOB,mount_tag=job,security_model=passthrough,multidevs=remap")
i=0
for p in "${RW[@]}"; do
	QEMU+=(-virtfs "local,path=$p,mount_tag=rw$i,security_model=passthrough,multidevs=remap")
	i=$((i + 1))
done

# timeout(1) ends a guest that hangs (a background sleep as a watchdog would outlive
# us and hold our stdout open).
if [ $INTERACTIVE = 1 ]; then
	timeout --foreground "$TIMEOUT" "${QEMU[@]}" -serial mon:stdio
	qrc=$?
else
	timeout "$TIMEOUT" "${QEMU[@]}" -serial "file:$JOB/console.log" &
	qpid=$!
	tail -n +1 -f --pid=$qpid "$JOB/out" &
	tpid=$!
	wait $qpid
	qrc=$?
	wait $tpid 2> /dev/null
fi
[ $qrc = 124 ] && echo "kernel-matrix: guest killed after $TIMEOUT s (--timeout)" >&2
if [ ! -s "$JOB/rc" ]; then
	echo "kernel-matrix: the guest reported no exit code; its console:" >&2
	tail -n 40 "$JOB/console.log" >&2 2> /dev/null
	exit 125
fi
exit "$(cat "$JOB/rc")"
