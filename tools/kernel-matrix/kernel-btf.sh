#!/bin/bash
# The BTF a Debian kernel serves at /sys/kernel/btf/, taken from its package on the
# host without booting it: vmlinux's .BTF section (the bzImage's payload decompressed)
# and each named module's .BTF section (the bytes the kernel returns for that module's
# BTF object, e.g. in BPF_OBJ_GET_INFO_BY_FD's btf buffer). Checked identical to the
# guest's /sys/kernel/btf/ files (sha256) on 6.1.0-57, 6.12.95 and 5.10.0-46.
#
#   tools/kernel-matrix/kernel-btf.sh SERIES OUTDIR [MODULE...]
#     writes OUTDIR/vmlinux and OUTDIR/MODULE for each MODULE (e.g. 9pnet nf_conntrack)
# Needs llvm-objcopy (Debian llvm) and xz/zstd/gzip for the image's compression.
set -eu
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=kernels.sh
. "$HERE/kernels.sh"
[ $# -ge 2 ] || km_die "usage: kernel-btf.sh SERIES OUTDIR [MODULE...]"
series=$1 out=$2
shift 2
kernel_prepare "$series"
mkdir -p "$out"
OBJCOPY=$(command -v llvm-objcopy || command -v objcopy) || km_die "llvm-objcopy is missing"

vmlinux=$KDIR/vmlinux
if [ ! -e "$vmlinux" ]; then
	# the payload of a bzImage: the first xz, zstd or gzip stream that decompresses
	img=$KDIR/boot/vmlinuz-$KVER
	read -r kind off < <(python3 - "$img" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
magics = {"xz": b"\xfd7zXZ\x00", "zstd": b"\x28\xb5\x2f\xfd", "gzip": b"\x1f\x8b\x08"}
found = sorted((data.find(m), k) for k, m in magics.items() if data.find(m) >= 0)
print(found[0][1], found[0][0]) if found else print("none 0")
PY
)
	case $kind in
	xz) tail -c +$((off + 1)) "$img" | xz -dcq > "$vmlinux.tmp" 2> /dev/null || true ;;
	zstd) tail -c +$((off + 1)) "$img" | zstd -dcq > "$vmlinux.tmp" 2> /dev/null || true ;;
	gzip) tail -c +$((off + 1)) "$img" | gzip -dcq > "$vmlinux.tmp" 2> /dev/null || true ;;
	*) km_die "no compressed payload found in $img" ;;
	esac
	mv "$vmlinux.tmp" "$vmlinux"
fi
"$OBJCOPY" --dump-section ".BTF=$out/vmlinux" "$vmlinux" /dev/null 2> /dev/null ||
	"$OBJCOPY" --dump-section ".BTF=$out/vmlinux" "$vmlinux" "$out/.junk"
rm -f "$out/.junk"
for m in "$@"; do
	f=$(km_module_path "$m")
	[ -n "$f" ] || km_die "no module $m in $KVER (built in?)"
	tmp=$(mktemp)
	case $f in
	*.xz) xz -dc "$f" > "$tmp" ;;
	*.zst) zstd -dcq "$f" > "$tmp" ;;
	*) cp "$f" "$tmp" ;;
	esac
	"$OBJCOPY" --dump-section ".BTF=$out/$m" "$tmp" "$tmp.out"
	rm -f "$tmp" "$tmp.out"
done
echo "$out"
