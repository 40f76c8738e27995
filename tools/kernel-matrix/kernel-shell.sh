#!/bin/bash
# An interactive shell on another Debian kernel (the host's file system, as
# run-in-kernel.sh sets it up). `exit` powers the guest off; Ctrl-A X kills qemu.
#
#   tools/kernel-matrix/kernel-shell.sh [OPTIONS] SERIES [COMMAND...]   (default bash -l)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
opts=()
while [ $# -gt 0 ]; do
	case $1 in
	--rw | --mem | --smp | --timeout) opts+=("$1" "$2"); shift 2 ;;
	-*) opts+=("$1"); shift ;;
	*) series=$1; shift; break ;;
	esac
done
[ -n "${series:-}" ] || { echo "usage: kernel-shell.sh [OPTIONS] SERIES [COMMAND...]" >&2; exit 2; }
[ $# -gt 0 ] || set -- /bin/bash -l
exec "$HERE/run-in-kernel.sh" --interactive "${opts[@]}" "$series" -- "$@"
