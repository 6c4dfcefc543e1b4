#!/usr/bin/env bash
# Check the sample corpus against the built binary and the official XSD.
#   valid/*        dpv-batch exits 0; XML files also pass xmllint with the official XSD
#   invalid/*.xml  dpv-batch prints exactly NAME.expect ("LINE CODE" per error);
#                  xmllint agrees on the schema verdict (only DPV codes other than
#                  DPV012 => the official XSD accepts the file)
#   invalid/*.zip  dpv-batch prints exactly NAME.expect
# Usage: samples/src/check-samples.sh [BINARY]   (default target/release/dpv-batch)
# Note: invalid/zip-attachment-too-large.zip (135 MB of XML) takes minutes today.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-../target/release/dpv-batch}
XSD=${XSD:-/work/shared/reference/altinn/correspondence.2022.11.utf8.xsd}
fail=0
bad() { echo "FAIL $*"; fail=1; }

for f in valid/*; do
  out=$("$BIN" validate "$f" 2>&1) || bad "$f: $out"
  if [[ $f == *.xml ]] && [ -f "$XSD" ]; then
    xmllint --noout --nonet --schema "$XSD" "$f" 2>/dev/null || bad "$f: official XSD rejects it"
  fi
done

for f in invalid/*.xml invalid/*.zip; do
  expect=${f%.*}.expect
  [ -f "$expect" ] || { bad "$f: no $expect"; continue; }
  got=$("$BIN" validate --format json "$f" | python3 -c '
import json, sys
for e in json.load(sys.stdin)[0]["errors"]:
    print(e["line"], e["code"])')
  if [ "$got" != "$(cat "$expect")" ]; then
    bad "$f"; diff <(echo "$got") "$expect" | sed 's/^/    /'
  fi
  if [[ $f == *.xml ]] && [ -f "$XSD" ]; then
    # DPV012 (bad base64) is the XSD's base64Binary check, reported with a better message.
    if grep -qvE ' DPV' "$expect" || grep -q ' DPV012' "$expect"; then want=fail; else want=pass; fi
    if xmllint --noout --nonet --schema "$XSD" "$f" >/dev/null 2>&1; then xsd=pass; else xsd=fail; fi
    [ "$xsd" = "$want" ] || bad "$f: official XSD says $xsd, .expect implies $want"
  fi
done
[ $fail = 0 ] && echo "all samples as expected"
exit $fail
