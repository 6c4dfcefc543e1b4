#!/usr/bin/env bash
# Benchmark: drop-to-last-receipt throughput of the whole pipeline over
# Altinn 3, against `dpv-batch sim-altinn3` with LATENCY_MS (default 20) added
# to every call, CONCURRENCY (default 16) letters in flight, for 10,000
# letters in two shapes: one file of 10,000, and 1,000 files of 10.
#
#   bench/altinn3.sh                   # both shapes
#   bench/altinn3.sh 1 10000           # one shape: FILES LETTERS
#
# Target (issue 8): at least 0.7 of the ideal concurrency / latency
# (560 letters/s at 16 in flight and 20 ms), and a peak RSS of the daemon of
# at most 128 MiB. Wall time runs from the moment the files appear in the
# inbox (one rename each) until `dpv-batch run --once` exits with every
# receipt written; peak RSS is the daemon's VmHWM (GNU time's "Maximum
# resident set size").
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=$PWD/target/release/dpv-batch
latency=${LATENCY_MS:-20}
concurrency=${CONCURRENCY:-16}

shape() { # files letters
  local files=$1 letters=$2
  local dir
  dir=$(mktemp -d)
  mkdir -p "$dir/inbox" "$dir/gen"
  cp tests/fixtures/altinn3/client.pem "$dir/client.pem"
  chmod 600 "$dir/client.pem"
  "$bin" sim-altinn3 --listen 127.0.0.1:0 --root "$dir/sim" \
    --client-key tests/fixtures/altinn3/client.pub.pem --latency-ms "$latency" \
    >"$dir/sim.log" 2>&1 &
  local sim=$!
  for _ in $(seq 1 300); do [ -s "$dir/sim/sim.toml" ] && break; sleep 0.02; done
  cat >"$dir/dpv.toml" <<TOML
[paths]
inbox = "inbox"
outbox = "outbox"
failed = "failed"
archive = "archive"
state = "state"
[intake]
ready = "rename"
[sender]
system_user_code = "ABC-123"
[transport]
kind = "altinn3"
[transport.altinn3]
environment = "custom"
route = "direct"
$(cat "$dir/sim/sim.toml")
client_id = "dpv-batch-bench"
private_key = "client.pem"
key_id = "bench"
concurrency = $concurrency
[transport.altinn3.resources]
"4255" = "eformidling-dpv-administrasjon"
[run]
poll_ms = 20
TOML
  for i in $(seq -w 1 "$files"); do
    "$bin" gen --letters "$letters" --shipment "B$i" -o "$dir/gen/b$i.xml"
  done
  local start end
  start=$(date +%s.%N)
  for f in "$dir"/gen/*.xml; do mv "$f" "$dir/inbox/"; done
  /usr/bin/time -f "%M" -o "$dir/rss" \
    "$bin" run --once --timeout 600s --config "$dir/dpv.toml" 2>"$dir/run.log"
  end=$(date +%s.%N)
  kill "$sim" 2>/dev/null || true
  wait "$sim" 2>/dev/null || true
  local receipts created rss
  receipts=$(ls "$dir/outbox" | grep -c 'receipt.xml$' || true)
  created=$(ls "$dir/sim/correspondences" | grep -c '\.json$' || true)
  rss=$(tail -1 "$dir/rss")
  awk -v s="$start" -v e="$end" -v f="$files" -v l="$letters" -v r="$receipts" \
      -v c="$created" -v m="$rss" -v lat="$latency" -v k="$concurrency" 'BEGIN {
    t = e - s; n = f * l; ideal = k * 1000 / lat;
    printf "%5d files x %5d letters: %6.2f s drop to last receipt, %5.0f letters/s (%.2f of ideal %d), peak RSS %.1f MiB (%d receipts, %d created)\n",
      f, l, t, n / t, n / t / ideal, ideal, m / 1024, r, c }'
  rm -rf "$dir"
}

if [ $# -eq 2 ]; then
  shape "$1" "$2"
else
  shape 1 10000
  shape 1000 10
fi
