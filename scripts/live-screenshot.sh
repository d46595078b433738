#!/usr/bin/env bash
# docs/images/live.png: the live view of a real run. Starts `kmem serve` on the bundled capture on a
# fixed port, seeks it to the PHASE tree marker (the machine as `kmem replay --until "PHASE tree"`
# leaves it), plays on from there at 5,000 events a second and photographs the page with Debian's
# chromium (apt-get install -y chromium) after 15 seconds of watching (KMEM_LIVE_PLAY_MS; a loaded host
# needs them for the page's first update). Then stops the server.
# With --pressure: docs/images/live-pressure.png, the pressure capture seeked to its WORKLOAD_END marker
# (the OOM kill done) and photographed paused, in a window tall enough for the pressure panel.
set -euo pipefail
cd "$(dirname "$0")/.."
trace=()
height=1250
if [ "${1:-}" = "--pressure" ]; then
    shift
    out="${1:-docs/images/live-pressure.png}"
    trace=(captures/linux-6.1-pressure-Q/trace.txt.xz)
    marker="${KMEM_LIVE_MARKER:-WORKLOAD_END}"
    height=1800
else
    out="${1:-docs/images/live.png}"
    marker="${KMEM_LIVE_MARKER:-PHASE tree}"
fi
port="${KMEM_LIVE_PORT:-7399}"
command -v chromium >/dev/null || { echo "live-screenshot: chromium is missing (apt-get install -y chromium)" >&2; exit 1; }

dotnet build src/Kmem.Cli -c Release -v q -nologo >/dev/null
kmem="src/Kmem.Cli/bin/Release/net10.0/Kmem.Cli"
log=$(mktemp)
"$kmem" serve "${trace[@]}" --port "$port" >"$log" 2>&1 &
server=$!
trap 'rc=$?; kill -TERM "$server" 2>/dev/null; wait "$server" 2>/dev/null || true; [ $rc -eq 0 ] || cat "$log" >&2; rm -f "$log"' EXIT
url="http://127.0.0.1:$port"
state() { curl -sf "$url/api/state" || true; }
for _ in $(seq 600); do state | grep -q '"markers"' && break; sleep 0.5; done
index=$(state | python3 -c "import json,sys; d=json.load(sys.stdin); print([m['text'] for m in d['markers']].index(sys.argv[1]))" "$marker")
curl -sf -X POST "$url/api/control?cmd=seek&marker=$index"
position=$(state | python3 -c "import json,sys; d=json.load(sys.stdin); print(d['markers'][int(sys.argv[1])]['position'])" "$index")
for _ in $(seq 600); do
    state | python3 -c "import json,sys; d=json.load(sys.stdin); sys.exit(0 if d['position']==int(sys.argv[1]) and not d['playing'] else 1)" "$position" && break
    sleep 0.5
done
# Chromium opens the page while the replay plays (so the charts and sparklines have a history) and takes the
# picture when its --timeout ends the page's loading; then the replay is paused.
if [ ${#trace[@]} -eq 0 ]; then
    curl -sf -X POST "$url/api/control?cmd=play&speed=${KMEM_LIVE_SPEED:-5000}"
fi
chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars --window-size=1600,$height \
    --timeout="${KMEM_LIVE_PLAY_MS:-15000}" --screenshot="$out" "$url/" 2>/dev/null
curl -sf -X POST "$url/api/control?cmd=pause"
echo "live-screenshot: wrote $out"
