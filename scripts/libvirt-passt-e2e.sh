#!/bin/sh
# A real client: Debian 12's libvirt 9.0 runs *our* passt for
# <interface type='user'><backend type='passt'/>, and a domain booting the
# qemu-harness guest gets a DHCP lease through it (docs/testing.md).
#
# Everything happens in a network and mount namespace of this script's own
# (unshare -nm): libvirtd's runtime, state and configuration directories are
# tmpfs mounts there, the network is a veth pair inside the namespace (a
# default route to 10.0.2.2, nothing leaves the machine), and libvirt finds
# `passt` through PATH (libvirt 9.0 runs "passt" by name), which starts with
# a directory holding only our binary. libvirtd and the domain are stopped
# by PID / by name at the end.
#
# Needs root, libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
# (apt-get install --no-install-recommends), qemu-system-x86, and the
# qemu-harness guest: run
#   cargo test -p qemu-harness --test guest_network dhcpv4_lease_matches_passt_configuration
# once, which leaves target/qemu-harness/dhcpv4_lease/initrd.img (its /init
# runs the DHCP check and powers off) and the kernel in the harness cache.
#
# Usage: sh scripts/libvirt-passt-e2e.sh [TARGET_DIR]   (default: target)
set -eu

if [ "${LIBVIRT_E2E_INNER:-}" != 1 ]; then
	exec env LIBVIRT_E2E_INNER=1 unshare -nm --propagation private sh "$0" "$@"
fi

TARGET=$(cd "${1:-target}" && pwd)
PASST="$TARGET/debug/passt"
INITRD="$TARGET/qemu-harness/dhcpv4_lease/initrd.img"
KERNEL=$(ls "$TARGET"/qemu-harness/cache/*/vmlinuz* 2>/dev/null | head -n 1 || true)
for f in "$PASST" "$INITRD" "$KERNEL"; do
	[ -n "$f" ] && [ -e "$f" ] || { echo "missing: '$f' (see the header)"; exit 2; }
done

WORK=$(mktemp -d /tmp/libvirt-passt-e2e.XXXXXX)
echo "work directory: $WORK"
mkdir -p "$WORK/bin"
ln -s "$PASST" "$WORK/bin/passt"

# libvirt's QEMU driver resolves its built-in default user, libvirt-qemu
# (created by libvirt-daemon-system, which is not needed here), before it
# reads qemu.conf: give this namespace passwd and group files that have it.
cp /etc/passwd "$WORK/passwd"
cp /etc/group "$WORK/group"
grep -q '^libvirt-qemu:' "$WORK/passwd" ||
	echo 'libvirt-qemu:x:64055:64055::/var/lib/libvirt:/usr/sbin/nologin' >> "$WORK/passwd"
grep -q '^libvirt-qemu:' "$WORK/group" || echo 'libvirt-qemu:x:64055:' >> "$WORK/group"
grep -q '^kvm:' "$WORK/group" || echo 'kvm:x:64056:' >> "$WORK/group"
mount --bind "$WORK/passwd" /etc/passwd
mount --bind "$WORK/group" /etc/group

# Private libvirt directories and configuration.
for d in /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt /etc/libvirt; do
	mkdir -p "$d"
	mount -t tmpfs tmpfs "$d"
done
mkdir -p /etc/libvirt/qemu /var/lib/libvirt/qemu /var/log/libvirt/qemu
cat > /etc/libvirt/libvirtd.conf <<EOF
unix_sock_group = "root"
unix_sock_rw_perms = "0700"
log_outputs = "1:file:$WORK/libvirtd.log"
log_filters = "1:qemu.qemu_passt 1:util.command 3:*"
EOF
cat > /etc/libvirt/qemu.conf <<EOF
user = "root"
group = "root"
security_driver = "none"
dynamic_ownership = 0
EOF

# The namespace's network: lo, and a veth pair with a default route.
ip link set lo up
ip link add v0 type veth peer name v1
ip addr add 10.0.2.1/24 dev v0
ip link set v0 up
ip link set v1 up
ip route add default via 10.0.2.2 dev v0

PATH="$WORK/bin:$PATH" /usr/sbin/libvirtd -f /etc/libvirt/libvirtd.conf > "$WORK/libvirtd.out" 2>&1 &
LIBVIRTD=$!
cleanup() {
	virsh -c qemu:///system destroy passt-e2e > /dev/null 2>&1 || true
	virsh -c qemu:///system undefine passt-e2e > /dev/null 2>&1 || true
	kill "$LIBVIRTD" 2> /dev/null || true
	wait "$LIBVIRTD" 2> /dev/null || true
}
trap cleanup EXIT
i=0
until virsh -c qemu:///system version > /dev/null 2>&1; do
	i=$((i + 1))
	[ $i -lt 100 ] || { echo "libvirtd did not come up"; cat "$WORK/libvirtd.out"; exit 1; }
	sleep 0.2
done

# TCG by default (nested KVM does not run guests on these machines, as the
# harness's probe finds); LIBVIRT_E2E_ACCEL=kvm where it does.
ACCEL=${LIBVIRT_E2E_ACCEL:-qemu}
cat > "$WORK/domain.xml" <<EOF
<domain type='$ACCEL'>
  <name>passt-e2e</name>
  <memory unit='MiB'>256</memory>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$KERNEL</kernel>
    <initrd>$INITRD</initrd>
    <cmdline>console=ttyS0 quiet panic=-1</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <interface type='user'>
      <backend type='passt'/>
      <mac address='52:54:00:12:34:56'/>
      <ip address='10.0.2.15' family='ipv4' prefix='24'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'>
      <source path='$WORK/serial.log'/>
    </serial>
    <console type='serial'/>
  </devices>
</domain>
EOF

virsh -c qemu:///system define "$WORK/domain.xml" > /dev/null
virsh -c qemu:///system start passt-e2e
i=0
until grep -q '@@DONE' "$WORK/serial.log" 2> /dev/null; do
	i=$((i + 1))
	if [ $i -ge 600 ]; then
		echo "no @@DONE within 120 s"
		break
	fi
	sleep 0.2
done
echo "--- passt command line (libvirtd log):"
grep -o "passt --one-off[^\"]*" "$WORK/libvirtd.log" | head -n 1 || true
echo "--- guest serial (DHCP check):"
sed -n '/@@CHECK dhcp BEGIN/,/@@CHECK dhcp/p' "$WORK/serial.log" || true
grep -q '@@CHECK dhcp PASS' "$WORK/serial.log" && grep -q 'ip=10.0.2.15' "$WORK/serial.log"
echo "PASS: the domain got its lease from our passt under libvirt"
