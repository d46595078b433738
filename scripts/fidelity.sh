#!/usr/bin/env bash
# Regenerates docs/fidelity.md: replays both bundled captures with `kmem replay --json`
# (Release build, seed 1) and formats Kmem's per-decision fidelity (aligned and
# free-running, whole trace and per PHASE marker), the consequence totals, and the remaining
# gaps counted from every disagreement (--mismatches).
# Usage: scripts/fidelity.sh [OUT.md]   (default docs/fidelity.md; needs dotnet and python3)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/docs/fidelity.md}
cd "$root"
dotnet build -c Release src/Kmem.Cli >/dev/null
kmem="dotnet $root/src/Kmem.Cli/bin/Release/net10.0/Kmem.Cli.dll"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
$kmem replay captures/linux-6.1-boot-B/trace.txt.xz --seed 1 --mismatches 1000000 --json >"$tmp/B.json" 2>/dev/null
$kmem replay captures/linux-i386-highmem/trace.txt.xz --preset x86_32_pae --seed 1 --mismatches 1000000 --json >"$tmp/H.json" 2>/dev/null
python3 "$root/scripts/fidelity_md.py" "$tmp/B.json" "linux-6.1-boot-B (x86-64, 512 MiB, 2 CPUs)" captures/linux-6.1-boot-B \
    "$tmp/H.json" "linux-i386-highmem (i386 PAE, 1.5 GiB, 1 CPU)" captures/linux-i386-highmem >"$out"
# Memory pressure: the pressure capture's section (scripts/fidelity_pressure_md.py), appended.
$kmem replay captures/linux-6.1-pressure-Q/trace.txt.xz --seed 1 --mismatches 1000000 --json >"$tmp/Q.json" 2>/dev/null
python3 "$root/scripts/fidelity_pressure_md.py" "$tmp/Q.json" "linux-6.1-pressure-Q (x86-64, 384 MiB, 2 CPUs, 128 MiB swap)" >>"$out"
echo "wrote $out"
