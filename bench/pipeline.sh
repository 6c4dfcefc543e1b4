#!/usr/bin/env bash
# Benchmark: drop-to-final-receipt throughput of the whole pipeline on the
# local transport, against the simulator, for 10,000 small letters in two
# shapes (100 files x 100 letters, and 1,000 files x 10 letters).
#
#   bench/pipeline.sh              # SequenceNo off (the default)
#   NUMBERED=true bench/pipeline.sh  # dpv-batch numbers: one part in flight per SystemUserCode
#
# Wall time runs from the moment the files appear in the inbox (one rename
# each) until `dpv-batch run --once` exits with every receipt written.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=$PWD/target/release/dpv-batch

shape() { # files letters
  local files=$1 letters=$2
  local dir
  dir=$(mktemp -d)
  mkdir -p "$dir/inbox" "$dir/altinn" "$dir/gen"
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
sequence_numbers = ${NUMBERED:-false}
[transport]
kind = "local"
[transport.local]
root = "altinn"
[run]
poll_ms = 20
TOML
  for i in $(seq -w 1 "$files"); do
    "$bin" gen --letters "$letters" --shipment "B$i" -o "$dir/gen/b$i.xml"
  done
  "$bin" sim --root "$dir/altinn" --poll-ms 10 --no-confirmations >/dev/null 2>&1 &
  local sim=$!
  local start end
  start=$(date +%s.%N)
  for f in "$dir"/gen/*.xml; do mv "$f" "$dir/inbox/"; done
  "$bin" run --once --timeout 600s --config "$dir/dpv.toml" 2>"$dir/run.log"
  end=$(date +%s.%N)
  kill "$sim" 2>/dev/null || true
  local receipts
  receipts=$(ls "$dir/outbox" | grep -c 'receipt.xml$')
  awk -v s="$start" -v e="$end" -v f="$files" -v l="$letters" -v r="$receipts" 'BEGIN {
    t = e - s; n = f * l;
    printf "%5d files x %4d letters: %6.2f s drop to last receipt, %7.0f letters/s, %6.1f files/s (%d receipts)\n", f, l, t, n / t, f / t, r }'
  rm -rf "$dir"
}

shape 100 100
shape 1000 10
