#!/usr/bin/env bash
# Benchmark (a figure, not a test): splitting a part with one large attachment
# into Altinn 3 letter folders keeps memory flat. Generates a batch with one
# letter and an attachment of BYTES (default 200 MiB), splits it with
# `dpv-batch altinn3-split` (hidden developer command), checks the decoded
# file's size, and prints wall time and peak RSS; then the same with a 2 MiB
# attachment, so the two peaks can be compared.
#
#   bench/altinn3-split.sh [BYTES]
#
# Needs GNU time (/usr/bin/time, package `time`).
set -euo pipefail
cd "$(dirname "$0")/.."
bytes=${1:-209715200}
[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install time" >&2; exit 2; }
cargo build --release --quiet
bin=target/release/dpv-batch
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
run() { # attachment bytes
  "$bin" gen --letters 1 --attachment-bytes "$1" -o "$dir/part.xml"
  /usr/bin/time -f "%e %M" -o "$dir/t" "$bin" altinn3-split "$dir/part.xml" "$dir/out" >"$dir/log"
  read -r s kb <"$dir/t"
  got=$(stat -c %s "$dir/out/L00001/a001.bin")
  [ "$got" = "$1" ] || { echo "decoded $got bytes, expected $1" >&2; cat "$dir/log"; exit 1; }
  echo "attachment $(($1 / 1048576)) MiB (part $(($(stat -c %s "$dir/part.xml") / 1048576)) MiB): ${s} s, peak RSS $((kb / 1024)) MiB"
  rm -rf "$dir/out" "$dir/part.xml"
}
run "$bytes"
run 2097152
