#!/usr/bin/env bash
# Renders the HTML report of `go run ./bench` in headless Chromium and
# checks that it loads without errors and that its charts are drawn:
# every chart is an <svg> with data points (circles) and lines (polylines),
# the page makes no network request, and a screenshot is taken.
#
#   bench/render_report.sh            # small run, report kept in $OUT (default: a temp dir)
#   CHROMIUM=/path/to/chromium bench/render_report.sh
#
# Needs Chromium (Debian: apt-get install chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
chromium=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
if [ -z "$chromium" ]; then
	echo "render_report: chromium not found (apt-get install chromium)" >&2
	exit 2
fi
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
go run ./bench -duration 300ms -customers 500 -dataset 5000 -progress=false \
	-out "$out/report.html" -json "$out/report.json" >"$out/table.txt"

flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
	--disable-background-networking --disable-component-update --disable-sync
	--user-data-dir="$out/profile" --enable-logging=stderr --v=0)
"$chromium" "${flags[@]}" --dump-dom "file://$out/report.html" >"$out/dom.html" 2>"$out/chromium.log"
"$chromium" "${flags[@]}" --window-size=1280,3000 --screenshot="$out/report.png" "file://$out/report.html" \
	>/dev/null 2>>"$out/chromium.log"

fail() { echo "render_report: $*" >&2; exit 1; }
grep -q '</html>' "$out/dom.html" || fail "Chromium returned no document"
if grep -E 'CONSOLE|Uncaught|Failed to load resource|ERR_' "$out/chromium.log" | grep -v 'ERR_.*crashpad' >/dev/null; then
	grep -E 'CONSOLE|Uncaught|Failed to load resource|ERR_' "$out/chromium.log" >&2
	fail "errors while loading the report"
fi
svgs=$(grep -o '<svg' "$out/dom.html" | wc -l)
points=$(grep -o '<circle' "$out/dom.html" | wc -l)
lines=$(grep -o '<polyline' "$out/dom.html" | wc -l)
[ "$svgs" -ge 2 ] || fail "$svgs charts in the rendered page, want at least 2"
[ "$points" -ge 4 ] && [ "$lines" -ge 2 ] || fail "charts hold $points points and $lines lines"
if grep -Eq '(src|href)="https?:' "$out/dom.html"; then fail "the report refers to the network"; fi
[ -s "$out/report.png" ] || fail "no screenshot"
echo "render_report: ok: $svgs charts, $points points, $lines lines; screenshot $out/report.png ($(stat -c %s "$out/report.png") bytes)"
