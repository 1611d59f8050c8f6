#!/usr/bin/env bash
# Render a landauer HTML report in headless Chromium and check it.
#
#   scripts/check-report.sh REPORT.html OUT.png [WIDTHxHEIGHT]     (default 1280x2600)
#
# Fails (exit 1, one line on stderr naming the problem) when the page
#   - logs anything to the console or throws an uncaught exception: this Chromium logs
#     every console level (log, info, warn, error) the same way, as INFO:CONSOLE, so any
#     console message fails; the report is meant to have no scripts at all;
#   - loads anything besides itself: a network request it starts (found in Chromium's
#     net log by its file:// network isolation key; all of them fail anyway, as the host
#     resolver maps every name to NOTFOUND and every http(s) request goes to a dead proxy),
#     a local file (Chromium's FileURLLoader log) or any other subresource fetch (the
#     renderer's URL loader log); a failed load is not logged to stderr by Chromium, so
#     these are how loads are caught; data: URLs are fine;
#   - makes Chromium exit non-zero, time out (120 s, or
#     CHECK_REPORT_TIMEOUT seconds) or write no screenshot;
#   - renders blank (scripts/png_check.py: >= 1% non-background pixels, >= 16 colours).
# Chromium's own noise on stderr (dbus, GPU, sandbox warnings) is ignored.
# Exit 3 when no Chromium is installed (install Debian's `chromium` package, or set
# CHROMIUM=/path/to/chrome); exit 2 on bad usage. CHECK_REPORT_LOG=FILE keeps Chromium's log
# (and its net log as FILE.netlog.json).
set -euo pipefail

me=check-report
usage() {
  echo "usage: scripts/check-report.sh REPORT.html OUT.png [WIDTHxHEIGHT]" >&2
  exit 2
}
fail() {
  echo "$me: FAIL: $*" >&2
  exit 1
}

[[ $# -eq 2 || $# -eq 3 ]] || usage
report=$1
out=$2
size=${3:-1280x2600}
[[ $size =~ ^([0-9]+)x([0-9]+)$ ]] || usage
width=${BASH_REMATCH[1]}
height=${BASH_REMATCH[2]}
limit=${CHECK_REPORT_TIMEOUT:-120}
[[ $limit =~ ^[0-9]+$ ]] || usage
[[ -f $report ]] || { echo "$me: no such file: $report" >&2; exit 2; }
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

chromium=
if [[ -n ${CHROMIUM:-} ]]; then
  chromium=$(command -v "$CHROMIUM" || true)
else
  for candidate in chromium chromium-browser google-chrome; do
    if command -v "$candidate" >/dev/null; then
      chromium=$(command -v "$candidate")
      break
    fi
  done
fi
if [[ -z $chromium ]]; then
  echo "$me: no Chromium found${CHROMIUM:+ (CHROMIUM=$CHROMIUM)}; install Debian's chromium package (apt-get install chromium) or set CHROMIUM" >&2
  exit 3
fi

# --headless is the new headless mode from Chromium 132 on; 109-131 need --headless=new.
version=$("$chromium" --version 2>/dev/null || true)
major=$(sed -n 's/^[^0-9]*\([0-9][0-9]*\)\..*/\1/p' <<<"$version")
headless=--headless
if [[ -n $major ]] && ((major >= 109 && major < 132)); then
  headless=--headless=new
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
url=$(python3 -c 'import pathlib, sys; print(pathlib.Path(sys.argv[1]).resolve().as_uri())' "$report")
out_abs=$(python3 -c 'import os, sys; print(os.path.abspath(sys.argv[1]))' "$out")
rm -f "$out_abs"
log=$tmp/chromium.log
netlog=$tmp/netlog.json

start=$SECONDS
rc=0
timeout -k 10 "$limit" "$chromium" "$headless" \
  --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars \
  --window-size="$width,$height" --force-device-scale-factor=1 \
  --screenshot="$out_abs" \
  --user-data-dir="$tmp/profile" \
  --no-first-run --no-default-browser-check --disable-extensions --disable-default-apps \
  --disable-background-networking --disable-component-update --disable-sync \
  --host-resolver-rules="MAP * ~NOTFOUND" \
  --proxy-server=http://127.0.0.1:9 --proxy-bypass-list="<-loopback>" \
  --log-net-log="$netlog" \
  --enable-logging=stderr --v=0 \
  --vmodule=file_url_loader_factory=1,renderer_url_loader_throttle=2 \
  "$url" </dev/null >"$log" 2>&1 || rc=$?
elapsed=$((SECONDS - start))
if [[ -n ${CHECK_REPORT_LOG:-} ]]; then
  cp "$log" "$CHECK_REPORT_LOG"
  if [[ -f $netlog ]]; then cp "$netlog" "$CHECK_REPORT_LOG.netlog.json"; fi
fi

if ((rc == 124 || rc == 137)); then
  fail "chromium timed out after $limit s rendering $report"
elif ((rc != 0)); then
  fail "chromium exited with status $rc rendering $report: $(grep -v -e dbus -e '^/usr/bin/chromium' "$log" | tail -n 1)"
fi

# Page console messages, uncaught exceptions included. Chromium writes them as
#   [pid:tid:date/time.us:INFO:CONSOLE:9] "message", source: file:///path/report.html (9)
# (CONSOLE(9) in older versions), whatever the console level.
problems=()
while IFS= read -r line; do
  msg=${line#*] }
  if [[ $msg == '"Uncaught '* ]]; then
    problems+=("uncaught exception: $msg")
  else
    problems+=("page console message: $msg")
  fi
done < <(grep -E '^\[[^]]*:CONSOLE[:(][0-9]*\)?\] ' "$log" || true)

# Network requests the page started: URL requests whose network isolation key (or
# initiator) is the file:// page's; Chromium's own background requests have other keys.
[[ -s $netlog ]] || fail "chromium wrote no net log"
requested=$(python3 - "$netlog" <<'EOF'
import json, sys

text = open(sys.argv[1], encoding="utf-8", errors="replace").read().rstrip()
try:
    netlog = json.loads(text)
except ValueError:
    # a net log cut short has no closing brackets
    netlog = json.loads(text.rstrip(",") + "]}")
start_job = netlog["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
seen = set()
for event in netlog.get("events", []):
    params = event.get("params") or {}
    if event.get("type") != start_job or "url" not in params:
        continue
    nik = str(params.get("network_isolation_key", ""))
    initiator = str(params.get("initiator", ""))
    if nik.startswith("file://") or initiator == "null" or initiator.startswith("file://"):
        if params["url"] not in seen:
            seen.add(params["url"])
            print(params["url"])
EOF
) || fail "could not read chromium's net log"
while IFS= read -r url_requested; do
  [[ -z $url_requested ]] || problems+=("page tried to load a network resource: $url_requested")
done <<<"$requested"

# Loads of anything but the report itself.
while IFS= read -r loaded; do
  [[ $loaded == "$url" ]] || problems+=("page loaded a local file: $loaded")
done < <(sed -n 's/.*FileURLLoader::Start: //p' "$log")
while IFS= read -r fetched; do
  problems+=("page fetched a subresource: $fetched")
done < <(LC_ALL=C sed -n 's/.*WillStartRequest.* \([a-z][a-z0-9+.-]*:[^ ]*\) .*/\1/p' "$log")

if ((${#problems[@]} > 0)); then
  more=
  if ((${#problems[@]} > 1)); then
    more=" (and $((${#problems[@]} - 1)) more)"
  fi
  fail "${problems[0]}$more"
fi

[[ -s $out_abs ]] || fail "chromium wrote no screenshot to $out_abs"
stats=$(python3 "$here/png_check.py" "$out_abs" 2>&1) || fail "screenshot check: ${stats#png_check: }"
echo "$stats"

bytes=$(wc -c <"$out_abs")
echo "$me: ok: $report rendered to $out_abs (${width}x${height}, $bytes bytes, chromium ${major:-?}, ${elapsed}s)"
