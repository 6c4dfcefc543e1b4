#!/usr/bin/env bash
# Benchmark: what monitoring costs with a journal of many files.
#
#   bench/metrics.sh            # 2,000 files (FILES=10000 bench/metrics.sh for more)
#
# 1. FILES one-letter batches go through the daemon (local transport, the
#    simulator as Altinn) with [metrics] listen on; then
# 2. SCRAPES scrapes of /metrics over HTTP (curl, one connection each):
#    the mean and worst time and the bytes per scrape. A scrape only
#    renders what is recorded, so neither should grow with the journal;
#    the journal is read once per tick (files by state, overdue receipts);
# 3. `status --check` (a process start, the config, the read-only journal
#    and its queries), the mean of 20 runs, while the daemon still runs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=$PWD/target/release/dpv-batch
files=${FILES:-2000}
scrapes=${SCRAPES:-500}

dir=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
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
[transport]
kind = "local"
[transport.local]
root = "altinn"
[run]
poll_ms = 100
[metrics]
listen = "127.0.0.1:$port"
TOML
for i in $(seq -w 1 "$files"); do
  "$bin" gen --letters 1 --shipment "M$i" -o "$dir/gen/m$i.xml"
done
"$bin" sim --root "$dir/altinn" --poll-ms 10 --no-confirmations >/dev/null 2>&1 &
sim=$!
"$bin" run --config "$dir/dpv.toml" 2>"$dir/run.log" &
daemon=$!
trap 'kill $sim $daemon 2>/dev/null || true; wait 2>/dev/null; rm -rf "$dir"' EXIT
for f in "$dir"/gen/*.xml; do mv "$f" "$dir/inbox/"; done

scrape() { curl -fsS "http://127.0.0.1:$port/metrics"; }
done_files() { scrape 2>/dev/null | awk '$1 == "dpv_batch_files{state=\"done\"}" { print $2 }'; }
deadline=$((SECONDS + 900))
until [ "$(done_files)" = "$files" ]; do
  [ $SECONDS -lt $deadline ] || { echo "timed out; $(done_files) of $files done" >&2; exit 1; }
  sleep 0.5
done

for _ in $(seq "$scrapes"); do
  curl -fsS -o /dev/null -w '%{time_total} %{size_download}\n' "http://127.0.0.1:$port/metrics"
done | awk -v n="$scrapes" -v f="$files" '
  { t += $1; b += $2; if ($1 > max) max = $1 }
  END { printf "%d files in the journal: %d scrapes, mean %.2f ms, worst %.2f ms, %.0f bytes per scrape\n", f, n, 1000 * t / n, 1000 * max, b / n }'

start=$(date +%s.%N)
for _ in $(seq 20); do "$bin" status --check --config "$dir/dpv.toml" >/dev/null || true; done
end=$(date +%s.%N)
awk -v s="$start" -v e="$end" -v f="$files" 'BEGIN { printf "status --check with %d files: %.1f ms per run (process start included)\n", f, 1000 * (e - s) / 20 }'
"$bin" status --check --config "$dir/dpv.toml" || true
