#!/bin/sh
# Captures real busybox udhcpc traffic (DISCOVER, REQUEST in SELECTING state,
# renewing REQUEST, RELEASE) against busybox udhcpd, inside a network
# namespace this script creates and deletes. Needs root, busybox, tcpdump.
# Usage: capture-udhcpc.sh OUTDIR
set -eu
OUT=$(realpath "${1:-.}")
NS=dhcpcap-$$
NSS=dhcpcap-srv-$$
TMP=$(mktemp -d)
cleanup() {
    [ -n "${CLIENT:-}" ] && kill "$CLIENT" 2>/dev/null || true
    [ -n "${SERVER:-}" ] && kill "$SERVER" 2>/dev/null || true
    [ -n "${DUMP:-}" ] && kill "$DUMP" 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    ip netns del "$NSS" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
# Client and server live in two namespaces so that unicast renewals and
# releases really cross the veth link instead of short-cutting through lo.
ip netns add "$NS"
ip netns add "$NSS"
ip -n "$NS" link add cli0 address 02:00:00:00:00:15 type veth peer name srv0 address 02:00:00:00:00:01 netns "$NSS"
ip -n "$NS" link set lo up
ip -n "$NSS" link set lo up
ip -n "$NS" link set cli0 up
ip -n "$NSS" link set srv0 up
ip -n "$NSS" addr add 192.0.2.1/24 dev srv0

cat > "$TMP/udhcpd.conf" <<CONF
start 192.0.2.15
end 192.0.2.15
interface srv0
lease_file $TMP/leases
pidfile $TMP/udhcpd.pid
opt subnet 255.255.255.0
opt router 192.0.2.1
opt dns 192.0.2.53
opt lease 3600
CONF
touch "$TMP/leases"
cat > "$TMP/script" <<'SCRIPT'
#!/bin/sh
case "$1" in
bound|renew) ip addr replace "$ip/24" dev "$interface" ;;
deconfig) ip addr flush dev "$interface" ;;
esac
SCRIPT
chmod +x "$TMP/script"

ip netns exec "$NSS" tcpdump -i srv0 -U -s 0 -w "$TMP/all.pcap" 'udp port 67 or udp port 68' 2>/dev/null &
DUMP=$!
sleep 1
ip netns exec "$NSS" busybox udhcpd -f "$TMP/udhcpd.conf" &
SERVER=$!
sleep 0.5
ip netns exec "$NS" busybox udhcpc -f -i cli0 -t 3 -T 1 -s "$TMP/script" -x hostname:guest &
CLIENT=$!
sleep 3
kill -USR1 "$CLIENT"   # renew: unicast REQUEST with ciaddr
sleep 2
kill -USR2 "$CLIENT"   # release
sleep 1
kill "$CLIENT"; CLIENT=
sleep 0.5
kill "$DUMP"; wait "$DUMP" 2>/dev/null || true; DUMP=
cp "$TMP/all.pcap" "$OUT/udhcpc-session.pcap"
echo "wrote $OUT/udhcpc-session.pcap"
