#!/usr/bin/env bash
# Installs the native allocators the benchmarks compare Kmem with (Debian or Ubuntu):
# mimalloc, jemalloc and tcmalloc-minimal. The benchmarks run without them; each
# missing one is skipped with a note. Uses sudo when not run as root.
set -euo pipefail

packages=(libmimalloc2.0 libjemalloc2 libtcmalloc-minimal4)

if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: apt-get not found; install ${packages[*]} (or your system's equivalents) by hand" >&2
    exit 1
fi

run() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "setup: not root and sudo not found; run as root: $*" >&2
        exit 1
    fi
}

run apt-get update
DEBIAN_FRONTEND=noninteractive run apt-get install -y --no-install-recommends "${packages[@]}"
echo "setup: installed ${packages[*]}"
