#!/usr/bin/env bash
# Cuts the oom phase of the pressure capture (captures/linux-6.1-pressure-Q) into a small
# excerpt for quick tests: the trace's header, the "PHASE compact" marker (so that the
# replay knows the phase whose /proc/vmstat the oom phase starts from), then every line from
# the "PHASE oom" marker through "WORKLOAD_END", with the snapshot files the replay reads
# (meminfo, zoneinfo and the vmstat files of the compact and oom phases, the final vmstat).
# Usage: scripts/cut-pressure-excerpt.sh   (from anywhere; rewrites captures/linux-6.1-pressure-Q/excerpt-oom)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
src="$root/captures/linux-6.1-pressure-Q"
out="$src/excerpt-oom"
mkdir -p "$out/meta/phase"
# awk stops at WORKLOAD_END, so xz ends on a closed pipe: that is not a failure.
set +o pipefail
xz -dc "$src/trace.txt.xz" | awk '
  /^#/ && !started { print; next }
  /tracing_mark_write: PHASE compact/ { print; next }
  /tracing_mark_write: PHASE oom/ { started = 1 }
  started { print }
  started && /tracing_mark_write: WORKLOAD_END/ { exit }
' | xz -9 -T1 > "$out/trace.txt.xz"
set -o pipefail
cp "$src/meminfo.txt" "$src/zoneinfo.txt" "$src/vmstat.txt" "$out/"
cp "$src/meta/phase/vmstat-after-compact.txt" "$src/meta/phase/vmstat-after-oom.txt" "$out/meta/phase/"
cat > "$out/README.md" <<'TXT'
# The oom phase of capture Q, cut for quick tests

Made by `scripts/cut-pressure-excerpt.sh` from `../trace.txt.xz`: the trace header, the `PHASE compact`
marker, then every line from `PHASE oom` through `WORKLOAD_END` (swapoff, then a hog the OOM killer kills:
`mark_victim: pid=207 comm=pressure`). The snapshot files are the full capture's (`meminfo.txt`,
`zoneinfo.txt`, `vmstat.txt`, `meta/phase/vmstat-after-{compact,oom}.txt`); a replay holds the memory the
excerpt cannot show (everything live when the oom phase began) as pages taken at the `PHASE oom` marker,
where `vmstat-after-compact.txt` gives the kernel's free pages.
TXT
echo "$out: $(xz -dc "$out/trace.txt.xz" | wc -l) lines, $(stat -c %s "$out/trace.txt.xz") bytes"
