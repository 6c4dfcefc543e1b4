#!/usr/bin/env bash
# Benchmark: time and peak RSS of `dpv-batch validate` on the inputs that
# were quadratic or unbounded before issue 7 §4, and of a local receipt
# fetch of 1 GiB:
#   1. 100 MB of text in a MessageTitle (was 34 s: quadratic in libxml2's
#      schema validator);
#   2. 400,000 rule errors: 400,000 letters of about 570 bytes, each with an
#      invalid Reportee, 228 MB (was 472 MB RSS: every error kept);
#   3. the same letters, valid (what per-letter state costs on its own);
#   4. a 1 GiB receipt through the local transport and the pipeline (was
#      1.06 GB RSS: read whole into memory); it is refused unread.
#
#   bench/bounded.sh            (needs GNU time: apt-get install time)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install time" >&2; exit 2; }
cargo build --release --quiet
bin=$PWD/target/release/dpv-batch
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

# One letter from `gen`, without its notification (about 570 bytes).
"$bin" gen --letters 1 -o "$dir/one.xml"
python3 - "$dir" <<'EOF'
import re, sys
d = sys.argv[1]
one = open(f"{d}/one.xml", encoding="utf-8").read()
head, rest = one.split("  <Correspondence>", 1)
letter = "  <Correspondence>" + rest.rsplit("</Correspondences>", 1)[0]
letter = re.sub(r"\s*<Notifications>.*</Notifications>", "", letter, flags=re.S)
with open(f"{d}/title.xml", "w", encoding="utf-8") as f:
    f.write(one.replace("<MessageTitle>", "<MessageTitle>" + "T" * 100_000_000, 1))
for name, reportee in (("errors", "123"), ("valid", None)):
    with open(f"{d}/{name}.xml", "w", encoding="utf-8") as f:
        f.write(head)
        for i in range(400_000):
            l = letter.replace("GEN-0001-00000000", f"GEN-0001-{i:08}")
            if reportee:
                l = re.sub(r"<Reportee>\d+</Reportee>", f"<Reportee>{reportee}</Reportee>", l)
            f.write(l)
        f.write("</Correspondences>\n")
EOF

measure() { # label, file
  cat "$2" >/dev/null
  /usr/bin/time -v -o "$dir/t" "$bin" validate "$2" >"$dir/out" 2>&1 || true
  local secs kb
  secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$dir/t")
  kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$dir/t")
  printf '%-28s %6.0f MB  wall %s  peak RSS %d MiB  | %s\n' "$1" \
    "$(($(stat -c %s "$2") / 1000000))" "$secs" "$((kb / 1024))" "$(tail -1 "$dir/out")"
}
measure "100 MB MessageTitle" "$dir/title.xml"
measure "400,000 rule errors" "$dir/errors.xml"
measure "400,000 letters, valid" "$dir/valid.xml"

# 4. A 1 GiB (+1 byte) receipt waiting in the local transport's folder, and
# one real batch: the batch completes, the receipt is refused unread.
ws=$dir/ws
mkdir -p "$ws/inbox" "$ws/altinn/receipts"
truncate -s $((1024 * 1024 * 1024 + 1)) "$ws/altinn/receipts/0-huge.receipt.xml"
cat >"$ws/dpv.toml" <<TOML
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
poll_ms = 20
TOML
"$bin" sim --poll-ms 10 --no-confirmations --root "$ws/altinn" >/dev/null 2>&1 &
sim=$!
cp samples/valid/letters-bokmal.xml "$ws/inbox/a.xml"
/usr/bin/time -v -o "$dir/t" "$bin" run --once --timeout 60s --config "$ws/dpv.toml" 2>"$dir/log" || true
kill "$sim" 2>/dev/null || true
kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$dir/t")
printf '%-28s %6s     run --once peak RSS %d MiB | %s\n' "1 GiB inbound receipt" "1074 MB" \
  "$((kb / 1024))" "$(grep -o 'over the limit of [0-9]* bytes' "$dir/log" | head -1); a.xml: $(grep -o '<Outcome>[A-Za-z]*' "$ws/outbox/a.xml.receipt.xml" | cut -c10-)"
