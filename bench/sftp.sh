#!/usr/bin/env bash
# Benchmark: upload one file over SFTP to a throwaway local OpenSSH server
# (scripts/sftp-server, 127.0.0.1) with `dpv-batch sftp-put` (the SFTP
# transport: temp name, pipelined writes, fsync, size check, rename) and with
# OpenSSH's `sftp -b` `put`, alternating, ROUNDS (default 5) runs each; prints
# median and best throughputs and the ratio dpv-batch / OpenSSH (target >= 0.9).
# dpv-batch's time includes what makes the upload safe: the size check, the
# rename and (by default) an fsync on the server (fsync@openssh.com), which
# OpenSSH's put does not do; so dpv-batch also runs with `fsync = false`.
#
#   bench/sftp.sh [MEGABYTES]     (default 256; at least 200 is meaningful)
#
# Needs root and openssh-server/openssh-client (as the tests do).
set -euo pipefail
cd "$(dirname "$0")/.."
mb=${1:-256}

cargo build --release --quiet
bin=target/release/dpv-batch
envfile=$(scripts/sftp-server start)
work=$(mktemp -d)
trap 'scripts/sftp-server stop "$envfile"; rm -rf "$work"' EXIT
# shellcheck disable=SC1090
. "$envfile"

head -c "$((mb * 1000 * 1000))" /dev/urandom >"$work/bench.xml"
size=$(stat -c %s "$work/bench.xml")
cat "$work/bench.xml" >/dev/null # warm the page cache

cat >"$work/dpv.toml" <<EOF
[paths]
inbox = "in"
outbox = "out"
failed = "failed"
archive = "archive"
state = "state"
[sender]
system_user_code = "ABC-123"
[transport]
kind = "sftp"
[transport.sftp]
host = "$SFTP_HOST"
port = $SFTP_PORT
user = "$SFTP_USER"
private_key = "$SFTP_KEY"
known_hosts = "$SFTP_KNOWN_HOSTS"
EOF
sed 's/^known_hosts = .*/&\nfsync = false/' "$work/dpv.toml" >"$work/dpv-nofsync.toml"
printf 'put %s upload/openssh.xml\n' "$work/bench.xml" >"$work/batch"

now() { date +%s.%N; }
run() { # label, remote file, command... : prints seconds
  local label=$1 remote=$2 t0
  shift 2
  rm -f "$SFTP_ACCOUNT/upload/$remote"
  sync
  t0=$(now)
  "$@" >"$work/run.log" 2>&1 || { echo "$label failed:" >&2; cat "$work/run.log" >&2; exit 1; }
  awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.3f\n", b - a}'
  [ "$(stat -c %s "$SFTP_ACCOUNT/upload/$remote")" = "$size" ] || { echo "$label: wrong size" >&2; exit 1; }
}
sftp_cmd=(sftp -q -b "$work/batch" -i "$SFTP_KEY" -P "$SFTP_PORT" -o BatchMode=yes
  -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$SFTP_KNOWN_HOSTS" "$SFTP_USER@$SFTP_HOST")

# Alternate, so a change in the machine's load hits all alike.
rounds=${ROUNDS:-5}
: >"$work/ours" && : >"$work/ours-nofsync" && : >"$work/openssh"
for _ in $(seq 1 "$rounds"); do
  run dpv-batch bench.xml "$bin" sftp-put --config "$work/dpv.toml" "$work/bench.xml" >>"$work/ours"
  cipher=$(sed -n 's/.*, cipher \([^:]*\):.*/\1/p' "$work/run.log")
  run "dpv-batch (fsync = false)" bench.xml "$bin" sftp-put --config "$work/dpv-nofsync.toml" "$work/bench.xml" >>"$work/ours-nofsync"
  run "sftp -b" openssh.xml "${sftp_cmd[@]}" >>"$work/openssh"
done
default_cipher=$(ssh -G -p "$SFTP_PORT" "$SFTP_HOST" 2>/dev/null | awk '$1=="ciphers"{split($2,c,","); print c[1]}')
median() { sort -n "$1" | awk '{v[NR]=$1} END{print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
best() { sort -n "$1" | head -1; }

awk -v size="$size" -v n="$rounds" \
    -v am="$(median "$work/ours")" -v ab="$(best "$work/ours")" \
    -v fm="$(median "$work/ours-nofsync")" -v fb="$(best "$work/ours-nofsync")" \
    -v bm="$(median "$work/openssh")" -v bb="$(best "$work/openssh")" \
    -v oc="$cipher" -v dc="$default_cipher" -v load="$(cut -d' ' -f1-3 /proc/loadavg)" 'BEGIN {
  mb = size / 1e6
  printf "file: %.0f MB to 127.0.0.1, %d alternating runs each, load average %s\n", mb, n, load
  printf "dpv-batch sftp-put (default, fsync): median %5.2f s = %6.1f MB/s, best %5.2f s = %6.1f MB/s (cipher %s)\n", am, mb / am, ab, mb / ab, oc
  printf "dpv-batch sftp-put (fsync = false) : median %5.2f s = %6.1f MB/s, best %5.2f s = %6.1f MB/s\n", fm, mb / fm, fb, mb / fb
  printf "OpenSSH sftp -b put (no fsync)     : median %5.2f s = %6.1f MB/s, best %5.2f s = %6.1f MB/s (cipher %s)\n", bm, mb / bm, bb, mb / bb, dc
  printf "ratio dpv-batch / OpenSSH, default     : median %.2f, best %.2f (target >= 0.9)\n", bm / am, bb / ab
  printf "ratio dpv-batch / OpenSSH, fsync=false : median %.2f, best %.2f (like for like)\n", bm / fm, bb / fb
}'
