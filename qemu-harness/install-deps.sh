#!/bin/sh
# Installs what the qemu-harness suite needs on a Debian 12 machine (run as root).
# The guest kernel and busybox are fetched by the harness itself (apt-get download).
set -eu
need=""
command -v qemu-system-x86_64 >/dev/null 2>&1 || need="$need qemu-system-x86"
command -v passt >/dev/null 2>&1 || need="$need passt"
command -v ip >/dev/null 2>&1 || need="$need iproute2"
command -v gzip >/dev/null 2>&1 || need="$need gzip"
if [ -n "$need" ]; then
    apt-get update -q
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $need
fi
# The harness resolves linux-image-amd64 and busybox-static through apt-cache.
if ! apt-cache policy busybox-static | grep -q 'Candidate: [0-9]'; then
    apt-get update -q
fi
