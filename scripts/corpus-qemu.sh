#!/bin/sh
# Regenerates the qemu-harness captures of corpus/replay/ (corpus/MANIFEST):
# runs the qemu-harness guest suite (a Debian kernel guest under QEMU) once
# against this workspace's passt and once against Debian's /usr/bin/passt, each
# writing its --pcap, and copies the small captures into corpus/replay/ as
# qemu-ours-TEST.pcap and qemu-debian-TEST.pcap.
#
# Usage: scripts/corpus-qemu.sh [ours|debian]...   (default: both)
# Needs root, qemu-system-x86_64 and `./dev setup` (Debian's passt).
# QEMU_HARNESS_BULK_LEN (default 262144 here) sets the bulk transfer size.
# Debian's passt fails some checks (docs/testing.md): a failing test is
# reported but its capture is kept, as the known-bug entries need it.
set -eu
cd "$(dirname "$0")/.."
out=corpus/replay
export QEMU_HARNESS_BULK_LEN="${QEMU_HARNESS_BULK_LEN:-262144}"
# Captures kept: harness directory (RunSpec name) -> corpus name.
keep="dhcpv4_lease dns_forward dual_stack http_wget_gateway inbound_tcp
ping_gateway tcp_echo_gateway tcp_echo_fin_with_data tcp_echo_crossing_close
bulk_udp"
[ $# -gt 0 ] || set -- ours debian
cargo build -q -p passt-engine --bin passt
for which in "$@"; do
    case "$which" in
    ours) bin="$(pwd)/target/debug/passt" ;;
    debian) bin=/usr/bin/passt ;;
    *) echo "unknown binary set: $which (ours|debian)" >&2; exit 2 ;;
    esac
    dir="$(pwd)/target/qemu-harness"
    mkdir -p "$dir"
    echo "== $which: $bin ($("$bin" --version 2>&1 | head -1))"
    PASST_BIN="$bin" cargo test -p qemu-harness --test guest_network -- \
        --include-ignored --test-threads 2 >"$dir/test-$which.log" 2>&1 || true
    grep -E '^test .* (ok|FAILED)$|test result' "$dir/test-$which.log" || true
    for t in $keep; do
        f="$dir/$t/capture.pcap"
        if [ -s "$f" ]; then
            cp "$f" "$out/qemu-$which-$(echo "$t" | tr _ -).pcap"
        else
            echo "no capture for $t" >&2
        fi
    done
done
ls -l "$out"/qemu-*.pcap
