#!/bin/sh
# Captures real ISC dhclient requests (DHCPv4 DISCOVER, DHCPv6 SOLICIT and
# INFORMATION-REQUEST) with no server answering, inside network namespaces
# this script creates and deletes. Needs root, isc-dhcp-client, tcpdump.
# Usage: capture-dhclient.sh OUTDIR
set -eu
OUT=$(realpath "${1:-.}")
NS=dhcpcap-$$
NSS=dhcpcap-srv-$$
TMP=$(mktemp -d)
cleanup() {
    [ -n "${DUMP:-}" ] && kill "$DUMP" 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    ip netns del "$NSS" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
ip netns add "$NS"
ip netns add "$NSS"
ip netns exec "$NS" sysctl -qw net.ipv6.conf.default.accept_dad=0
ip -n "$NS" link add cli0 address 02:00:00:00:00:15 type veth peer name srv0 address 02:00:00:00:00:01 netns "$NSS"
ip -n "$NS" link set lo up
ip -n "$NSS" link set lo up
ip -n "$NS" link set cli0 up
ip -n "$NSS" link set srv0 up

capture() { # name filter command...
    name=$1; filter=$2; shift 2
    ip netns exec "$NSS" tcpdump -i srv0 -U -s 0 -w "$TMP/$name.pcap" "$filter" 2>/dev/null &
    DUMP=$!
    sleep 1
    ip netns exec "$NS" timeout 5 "$@" >/dev/null 2>&1 || true
    sleep 0.5
    kill "$DUMP"; wait "$DUMP" 2>/dev/null || true; DUMP=
    cp "$TMP/$name.pcap" "$OUT/$name.pcap"
    echo "wrote $OUT/$name.pcap"
}
sleep 1
capture dhclient-discover 'udp port 67' \
    dhclient -4 -d -1 -lf "$TMP/l4" -pf "$TMP/p4" -sf /bin/true cli0
capture dhclient6-solicit 'udp port 547' \
    dhclient -6 -d -1 -lf "$TMP/l6" -pf "$TMP/p6" -sf /bin/true cli0
capture dhclient6-information-request 'udp port 547' \
    dhclient -6 -S -d -1 -lf "$TMP/l6s" -pf "$TMP/p6s" -sf /bin/true cli0
