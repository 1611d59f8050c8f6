#!/usr/bin/env bash
# Continuous batching under load on one `landauer serve`, for the GPU campaign (and its CPU
# dry run): starts the server given after `--` on a free loopback port, sends every prompt
# alone, then Poisson load at RATES with REQUESTS streamed greedy requests each
# (scripts/serve-load.py --check-alone), and stops the server with SIGTERM.
#
#   scripts/serve-check.sh OUT_DIR RATES REQUESTS -- landauer serve --model M [ARGS...]
#
# Writes OUT_DIR/serve-load.json (per rate: throughput, latency, time to first token, mean
# batch, J/token, billed/metered, responses that differ from alone) and OUT_DIR/serve.log.
set -uo pipefail
if [[ $# -lt 5 || $4 != -- ]]; then
  echo "usage: $0 OUT_DIR RATES REQUESTS -- landauer serve ARGS..." >&2
  exit 2
fi
out="$1" rates="$2" requests="$3"
shift 4
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$out"
log="$out/serve.log"
"$@" --port 0 >"$log" 2>&1 &
pid=$!
url=""
for _ in $(seq 1 600); do
  url="$(grep -o 'http://[0-9.]*:[0-9]*' "$log" | head -n 1)"
  [[ -n $url ]] && break
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "serve-check: the server exited:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.5
done
if [[ -z $url ]]; then
  echo "serve-check: the server did not start in 300 s" >&2
  kill -TERM "$pid"
  exit 1
fi
python3 "$here/serve-load.py" "$out" --server "serve=$url" --rates "$rates" \
  --requests "$requests" --max-tokens 64 --check-alone
rc=$?
kill -TERM "$pid"
wait "$pid" || rc=1
exit $rc
