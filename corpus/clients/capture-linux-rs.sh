#!/bin/sh
# Captures the Linux kernel's own IPv6 bring-up on a fresh link: the DAD
# neighbor solicitation for its link-local address and its router
# solicitations. Runs inside a network namespace this script creates and
# deletes. Needs root, iproute2, tcpdump.
# Usage: capture-linux-rs.sh OUTDIR
set -eu
OUT=$(realpath "${1:-.}")
NS=racap-$$
TMP=$(mktemp -d)
cleanup() {
    [ -n "${DUMP:-}" ] && kill "$DUMP" 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
ip netns add "$NS"
ip -n "$NS" link add va address 02:00:00:00:00:0a type veth peer name vb
ip -n "$NS" link set vb up
ip netns exec "$NS" tcpdump -i vb -U -w "$TMP/all.pcap" icmp6 >/dev/null 2>&1 &
DUMP=$!
sleep 1
ip netns exec "$NS" sysctl -qw net.ipv6.conf.va.router_solicitations=2 \
    net.ipv6.conf.va.router_solicitation_interval=1
ip -n "$NS" link set va up
sleep 6
kill "$DUMP"; wait "$DUMP" 2>/dev/null || true
DUMP=
tcpdump -r "$TMP/all.pcap" -w "$OUT/linux-dad-rs.pcap" 'ether src 02:00:00:00:00:0a'
