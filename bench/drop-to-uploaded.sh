#!/usr/bin/env bash
# Benchmark: drop-to-uploaded for one large batch over SFTP, against the sum
# of `xmllint --stream` validation (official XSD) and OpenSSH `sftp put` of the
# same file, measured in the same run. "Uploaded" is the moment dpv-batch logs
# the part as uploaded (temp name written, size checked, renamed): the batch
# was taken in, hashed, validated (three layers), packaged and sent.
#
#   bench/drop-to-uploaded.sh [LETTERS] [ATTACHMENT_BYTES]   (default: 20000 x 7800 = 241 MB)
#
# Needs root and openssh-server/openssh-client (as the tests do), xmllint.
set -euo pipefail
cd "$(dirname "$0")/.."
letters=${1:-20000}
attachment=${2:-7800}
official=../shared/reference/altinn/correspondence.2022.11.utf8.xsd
cargo build --release --quiet
bin=$PWD/target/release/dpv-batch
envfile=$(scripts/sftp-server start)
work=$(mktemp -d)
trap 'kill "${daemon:-0}" 2>/dev/null || true; scripts/sftp-server stop "$envfile"; rm -rf "$work"' EXIT
# shellcheck disable=SC1090
. "$envfile"
mkdir -p "$work/inbox" "$work/gen"
"$bin" gen --letters "$letters" --attachment-bytes "$attachment" -o "$work/gen/big.xml"
size=$(stat -c %s "$work/gen/big.xml")
cat "$work/gen/big.xml" >/dev/null
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b - a}'; }

t0=$(now); xmllint --stream --noout --nonet --schema "$official" "$work/gen/big.xml" 2>/dev/null; t_lint=$(secs "$t0" "$(now)")
printf 'put %s upload/openssh.xml\n' "$work/gen/big.xml" >"$work/batch"
t0=$(now)
sftp -q -b "$work/batch" -i "$SFTP_KEY" -P "$SFTP_PORT" -o BatchMode=yes -o StrictHostKeyChecking=yes \
  -o UserKnownHostsFile="$SFTP_KNOWN_HOSTS" "$SFTP_USER@$SFTP_HOST" >/dev/null
t_put=$(secs "$t0" "$(now)")
rm -f "$SFTP_ACCOUNT/upload/openssh.xml"

cat >"$work/dpv.toml" <<TOML
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
[package]
max_part_bytes = 1073741824
max_part_letters = 1000000
[validate]
max_attachment_bytes = 104857600
[transport]
kind = "sftp"
[transport.sftp]
host = "$SFTP_HOST"
port = $SFTP_PORT
user = "$SFTP_USER"
private_key = "$SFTP_KEY"
known_hosts = "$SFTP_KNOWN_HOSTS"
[run]
poll_ms = 10
TOML
"$bin" run --config "$work/dpv.toml" 2>"$work/run.log" &
daemon=$!
until grep -q "dpv-batch running" "$work/run.log"; do sleep 0.01; done
t0=$(now)
mv "$work/gen/big.xml" "$work/inbox/big.xml"
until grep -q ": uploaded file=" "$work/run.log"; do sleep 0.005; done
t_ours=$(secs "$t0" "$(now)")
kill "$daemon"; wait "$daemon" 2>/dev/null || true
[ "$(stat -c %s "$SFTP_ACCOUNT"/upload/dpv-*.xml)" = "$size" ] || { echo "uploaded size differs" >&2; exit 1; }

awk -v s="$size" -v l="$t_lint" -v p="$t_put" -v o="$t_ours" 'BEGIN {
  printf "batch %.0f MB; xmllint --stream %.2f s + sftp put %.2f s = %.2f s\n", s / 1e6, l, p, l + p
  printf "dpv-batch drop-to-uploaded %.2f s (ratio %.2f; target <= 1.0)\n", o, o / (l + p) }'
