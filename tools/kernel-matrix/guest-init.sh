#!/bin/sh
# The /init of the initramfs that run-in-kernel.sh boots (busybox sh, in the guest).
# It loads the modules shipped in /modules (in passes: there is no modprobe), mounts
# the host's root read-only over 9p under an overlay (a tmpfs upper, thrown away at
# power-off), the job folder and the read-write shares at their host paths, chroots
# into the overlay and runs the job's command, then writes its exit code to the job
# folder and powers off. Everything the host asks for is in the job folder (tag
# "job"): cmd (a bash script), mounts (one read-write host path a line, tag rwN for
# line N), kver, kdir (the unpacked kernel package on the host), interactive.
# Facts this rests on: /work/shared/docs/kernel-matrix.md.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

log() { echo "guest-init: $*" > /dev/console; }

# Modules in passes: a module whose dependencies are not in yet fails and is retried.
pending=$(cat /modules/order 2>/dev/null)
while [ -n "$pending" ]; do
	left=""
	for m in $pending; do
		insmod "/modules/$m.ko" 2>/dev/null || left="$left $m"
	done
	if [ "$left" = " $pending" ] || [ "$(echo $left)" = "$(echo $pending)" ]; then
		log "modules that would not load: $left"
		break
	fi
	pending=$(echo $left)
done

mkdir -p /job /lower /upper /root
mount -t 9p -o trans=virtio,version=9p2000.L,cache=mmap,msize=262144 job /job || {
	log "cannot mount the job share"; poweroff -f; }
JOB=$(cat /job/path)
KVER=$(cat /job/kver)
KDIR=$(cat /job/kdir)

mount -t 9p -o trans=virtio,version=9p2000.L,cache=loose,msize=262144,ro hostroot /lower
mount -t tmpfs -o size=50% tmpfs /upper
mkdir -p /upper/up /upper/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/upper/up,workdir=/upper/work /root

R=/root
mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount -t devtmpfs devtmpfs $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts devpts $R/dev/pts
mount -t tmpfs tmpfs $R/dev/shm
mount -t tmpfs tmpfs $R/tmp
mount -t tmpfs tmpfs $R/run
mount -t debugfs debugfs $R/sys/kernel/debug
mount -t tracefs tracefs $R/sys/kernel/tracing 2>/dev/null
mount -t bpf bpf $R/sys/fs/bpf
mount -t cgroup2 cgroup2 $R/sys/fs/cgroup

# The read-write shares after the tmpfs mounts (a tmpfs on /tmp would hide them).
i=0
while read -r p; do
	[ -n "$p" ] || continue
	mkdir -p "$R$p"
	mount -t 9p -o trans=virtio,version=9p2000.L,cache=mmap,msize=262144 "rw$i" "$R$p" ||
		log "cannot mount rw$i at $p"
	i=$((i + 1))
done < /job/mounts
mkdir -p "$R$JOB"
mount --bind /job "$R$JOB"

# The guest kernel's modules and config where libbpf, bpftool and modprobe look.
mkdir -p "$R/lib/modules/$KVER" "$R/boot"
mount --bind "/lower$KDIR/lib/modules/$KVER" "$R/lib/modules/$KVER"
mount --bind "/lower$KDIR/boot" "$R/boot"

ENV="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=${TERM:-linux} LANG=C.UTF-8"
if [ -e /job/interactive ]; then
	setsid cttyhack chroot $R /usr/bin/env -i $ENV /bin/bash "$JOB/cmd"
	echo $? > /job/rc
else
	chroot $R /usr/bin/env -i $ENV /bin/bash "$JOB/cmd" > /job/out 2>&1 < /dev/null
	echo $? > /job/rc
fi
sync
poweroff -f
