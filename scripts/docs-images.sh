#!/usr/bin/env bash
# Remakes the pictures in docs/images with the kmem command itself: the bundled capture's final
# state (README.md) and the fragmentation scenario before and after compaction
# (docs/memory-pressure.md). Replays and scenarios are deterministic, so the pictures only change
# when Kmem's behaviour does. Run from anywhere: ./scripts/docs-images.sh
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet build -c Release src/Kmem.Cli >/dev/null
kmem=(dotnet src/Kmem.Cli/bin/Release/net10.0/Kmem.Cli.dll)
"${kmem[@]}" replay captures/linux-6.1-boot-B/trace.txt.xz --map docs/images/replay.png >/dev/null
"${kmem[@]}" scenario fragmentation --map-dir docs/images >/dev/null
ls -l docs/images/*.png
