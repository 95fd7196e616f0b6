#!/bin/sh
# Throughput of our passt against a peer passt (default: Debian's
# /usr/bin/passt), measured in the same run, with smoltcp playing the guest.
# Prints, per smoltcp buffer size, a table: implementation, direction,
# median MiB/s of RUNS transfers of MIB MiB, and the ratio ours/peer.
#
# Environment: PEER (path, or "none"), MIB (default 256), RUNS (default 3),
# BUFS (smoltcp socket buffer sizes in KiB, default "256 1024 4096"),
# CARGO_TARGET_DIR (default: target/ in the workspace).
# Needs no privileges beyond starting passt; uses only 127.0.0.1 on the host.
set -eu
cd "$(dirname "$0")/.."
PEER=${PEER:-/usr/bin/passt}
MIB=${MIB:-256}
RUNS=${RUNS:-3}
BUFS=${BUFS:-"256 1024 4096"}
TARGET=${CARGO_TARGET_DIR:-$(pwd)/target}

cargo build --quiet --release -p passt-engine --bin passt --example bench_passt
OURS="$TARGET/release/passt"
BENCH="$TARGET/release/examples/bench_passt"

if [ "$PEER" = none ]; then
	PEER_ARGS="--no-peer"
elif [ -x "$PEER" ]; then
	PEER_ARGS="--peer $PEER"
else
	echo "peer $PEER not found: measuring ours only" >&2
	PEER_ARGS="--no-peer"
fi

echo "machine: $(nproc) CPUs, $(uname -sr); ours: $OURS; peer: $PEER"
for buf in $BUFS; do
	echo
	echo "== smoltcp socket buffers: $buf KiB, $RUNS runs of $MIB MiB per direction =="
	# shellcheck disable=SC2086
	"$BENCH" --ours "$OURS" $PEER_ARGS --mib "$MIB" --runs "$RUNS" --buf-kib "$buf"
done
