# Sourced by run-in-kernel.sh: finds, downloads and unpacks a Debian kernel package
# and builds the initramfs that boots it. Nothing is installed: the package is
# fetched with `apt-get download` and unpacked with `dpkg-deb -x` under the cache
# folder ($BPFREPLAY_KERNEL_CACHE, default /var/cache/bpfreplay-kernels).
#
#   kernel_prepare SERIES   (6.1, 6.12 or 5.10) -> sets KVER and KDIR, builds
#                           $KDIR/initramfs.gz if missing

KM_CACHE=${BPFREPLAY_KERNEL_CACHE:-/var/cache/bpfreplay-kernels}
KM_MIRROR=${BPFREPLAY_DEBIAN_MIRROR:-http://deb.debian.org}
KM_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# The modules the guest needs to reach the host's file system; their dependencies
# are added from the modules' own depends= lists. Ones a kernel has built in are
# simply absent from its package.
KM_MODULES="virtio virtio_ring virtio_pci virtio_pci_legacy_dev virtio_pci_modern_dev 9pnet 9pnet_virtio 9p overlay"

km_die() { echo "kernel-matrix: $*" >&2; exit 2; }

# apt with a private source list (suites the host's /etc/apt does not have); the
# lists live in the cache, /etc/apt is untouched.
km_apt_private() {
	local name=$1 line=$2; shift 2
	local dir=$KM_CACHE/apt/$name
	mkdir -p "$dir/lists/partial"
	printf '%s\n' "$line" > "$dir/sources.list"
	local opts=(-o "Dir::Etc::SourceList=$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
		-o "Dir::State::Lists=$dir/lists")
	if [ ! -e "$dir/lists/.updated" ]; then
		apt-get "${opts[@]}" update -qq >&2 || km_die "apt-get update for $name failed"
		touch "$dir/lists/.updated"
	fi
	"$@" "${opts[@]}"
}

# The package for SERIES: the image the series' linux-image-amd64 points to.
km_apt() {
	case $KM_SERIES in
	6.1) "$@" ;;
	6.12) km_apt_private bookworm-backports \
		"deb $KM_MIRROR/debian bookworm-backports main" "$@" ;;
	5.10) km_apt_private bullseye \
		"deb $KM_MIRROR/debian bullseye main
deb $KM_MIRROR/debian-security bullseye-security main" "$@" ;;
	*) km_die "unknown kernel series '$KM_SERIES' (known: 6.1, 6.12, 5.10)" ;;
	esac
}

km_package() {
	local dep
	if [ "$KM_SERIES" = 6.12 ]; then
		# backports is NotAutomatic: name the suite's own meta package version
		dep=$(km_apt apt-cache show linux-image-amd64 | awk '/^Version:/{v=$2} /^Depends:/{d=$2} /^$/{if (v ~ /^6\.12/) {print d; exit}}')
	else
		dep=$(km_apt apt-cache depends linux-image-amd64 | awk '/Depends:/{print $2; exit}')
	fi
	[ -n "$dep" ] || km_die "no linux-image package found for $KM_SERIES"
	echo "$dep"
}

# Unpack the package (once) into $KM_CACHE/<package>; set KDIR and KVER.
km_unpack() {
	local pkg=$1
	KDIR=$KM_CACHE/$pkg
	if [ ! -e "$KDIR/.unpacked" ]; then
		mkdir -p "$KM_CACHE/debs"
		if ! ls "$KM_CACHE/debs/${pkg}_"*.deb > /dev/null 2>&1; then
			echo "kernel-matrix: downloading $pkg" >&2
			(cd "$KM_CACHE/debs" && km_apt apt-get -o APT::Sandbox::User=root download -qq "$pkg") >&2 ||
				km_die "apt-get download $pkg failed"
		fi
		rm -rf "$KDIR" && mkdir -p "$KDIR"
		dpkg-deb -x "$(ls "$KM_CACHE/debs/${pkg}_"*.deb | tail -1)" "$KDIR" || km_die "dpkg-deb -x failed"
		touch "$KDIR/.unpacked"
	fi
	KVER=$(ls "$KDIR/lib/modules" | head -1)
	[ -n "$KVER" ] && [ -e "$KDIR/boot/vmlinuz-$KVER" ] || km_die "no kernel image in $KDIR"
}

# Path of module NAME in the unpacked tree ('-' and '_' are the same in names).
km_module_path() {
	local n=${1//-/_}
	find "$KDIR/lib/modules/$KVER/kernel" \( -name "$n.ko*" -o -name "${n//_/-}.ko*" \) | head -1
}

km_module_depends() {
	local f=$1
	case $f in
	*.xz) xz -dc "$f" ;;
	*.zst) zstd -dcq "$f" ;;
	*) cat "$f" ;;
	esac | tr '\0' '\n' | sed -n 's/^depends=//p' | tr ',' ' '
}

# Build $KDIR/initramfs.gz: static busybox, the modules (decompressed) and /init.
km_initramfs() {
	local out=$KDIR/initramfs.gz stamp
	stamp=$(cat "$KM_HERE/guest-init.sh" /bin/busybox | md5sum | cut -c1-12)
	[ -e "$out" ] && [ "$(cat "$KDIR/initramfs.stamp" 2>/dev/null)" = "$stamp" ] && return 0
	command -v busybox > /dev/null || km_die "busybox is missing (apt-get install busybox-static)"
	local tmp order="" seen=" " todo=$KM_MODULES m f
	tmp=$(mktemp -d)
	mkdir -p "$tmp/bin" "$tmp/modules" "$tmp/proc" "$tmp/sys" "$tmp/dev"
	cp /bin/busybox "$tmp/bin/busybox"
	for a in $(busybox --list); do
		[ "$a" = busybox ] || ln -s busybox "$tmp/bin/$a"
	done
	# dependencies first (depth-first), so that the first pass loads most of them
	km_add() {
		local m=${1//-/_} f d
		case $seen in *" $m "*) return ;; esac
		seen="$seen$m "
		f=$(km_module_path "$m")
		[ -n "$f" ] || return 0 # built in
		for d in $(km_module_depends "$f"); do km_add "$d"; done
		case $f in
		*.xz) xz -dc "$f" > "$tmp/modules/$m.ko" ;;
		*.zst) zstd -dcq "$f" > "$tmp/modules/$m.ko" ;;
		*) cp "$f" "$tmp/modules/$m.ko" ;;
		esac
		order="$order $m"
	}
	for m in $todo; do km_add "$m"; done
	echo $order > "$tmp/modules/order"
	cp "$KM_HERE/guest-init.sh" "$tmp/init"
	chmod 755 "$tmp/init"
	(cd "$tmp" && find . | busybox cpio -o -H newc 2> /dev/null) | gzip -1 > "$out.tmp" && mv "$out.tmp" "$out"
	echo "$stamp" > "$KDIR/initramfs.stamp"
	rm -rf "$tmp"
	echo "kernel-matrix: initramfs for $KVER with modules:$order" >&2
}

kernel_prepare() {
	KM_SERIES=$1
	local pkg
	if [ -e "$KM_CACHE/series-$KM_SERIES" ]; then
		pkg=$(cat "$KM_CACHE/series-$KM_SERIES")
	else
		pkg=$(km_package) || exit 2
		mkdir -p "$KM_CACHE" && echo "$pkg" > "$KM_CACHE/series-$KM_SERIES"
	fi
	km_unpack "$pkg"
	km_initramfs
}
