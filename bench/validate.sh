#!/usr/bin/env bash
# Benchmark: `dpv-batch validate` against `xmllint --stream --schema` with the
# official Altinn XSD, on one generated batch of 20,000 letters with an
# attachment each (about 240 MB). Prints wall time, peak RSS and the ratio.
#
#   bench/validate.sh [LETTERS] [ATTACHMENT_BYTES]
#
# Needs: xmllint (libxml2-utils) and GNU time (/usr/bin/time, package `time`).
set -euo pipefail
cd "$(dirname "$0")/.."
letters=${1:-20000}
attachment=${2:-7800}
official=../shared/reference/altinn/correspondence.2022.11.utf8.xsd
[ -f "$official" ] || { echo "official XSD not found at $official" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install time" >&2; exit 2; }

cargo build --release --quiet
bin=target/release/dpv-batch
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$bin" gen --letters "$letters" --attachment-bytes "$attachment" -o "$dir/batch.xml"
size=$(stat -c %s "$dir/batch.xml")
echo "batch: $letters letters, $((size / 1000000)) MB"

# Warm the page cache so both read from memory, then take the best of 3 runs.
cat "$dir/batch.xml" >/dev/null
best() { # label, command...
  local label=$1; shift
  local best_s=999999 best_kb=0
  for _ in 1 2 3; do
    /usr/bin/time -f "%e %M" -o "$dir/t" "$@" >/dev/null 2>&1 || { echo "$label failed" >&2; "$@" | tail -3; exit 1; }
    read -r s kb <"$dir/t"
    if awk "BEGIN{exit !($s < $best_s)}"; then best_s=$s; best_kb=$kb; fi
  done
  echo "$best_s $best_kb"
}
read -r ours_s ours_kb < <(best dpv-batch "$bin" validate "$dir/batch.xml")
read -r lint_s lint_kb < <(best xmllint xmllint --stream --noout --nonet --schema "$official" "$dir/batch.xml")
echo "dpv-batch validate : ${ours_s} s, peak RSS $((ours_kb / 1024)) MiB (reading + XSD + DPV rules)"
echo "xmllint --stream   : ${lint_s} s, peak RSS $((lint_kb / 1024)) MiB (reading + XSD)"
awk "BEGIN{printf \"ratio ours/xmllint: %.2f (target <= 1.0); throughput %.0f MB/s\n\", $ours_s/$lint_s, $size/1e6/$ours_s}"
