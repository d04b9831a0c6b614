#!/usr/bin/env bash
# demo-codec.sh — the codec demo run.sh shows until the switch exists: packs a typical 0200
# in each built-in dialect with isodump, shows the wire bytes as hex, decodes them back
# (masked) and proves the unmasked round trip is byte-identical. Expects build/bin/isodump.
set -euo pipefail
cd "$(dirname "$0")/.."
ISODUMP=build/bin/isodump
[ -x "$ISODUMP" ] || { echo "demo-codec: $ISODUMP not built" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cat > "$tmp/0200.json" <<'JSON'
{"mti":"0200","fields":{
  "2":"4761739001010010","3":"000000","4":"000000001000","7":"1126151230","11":"000123",
  "12":"151230","13":"1126","14":"2512","22":"051","25":"00",
  "35":"4761739001010010=2512201123456789","37":"123456789012","41":"TERM0001",
  "42":"MERCHANT0000001","43":"ATLAS TEST SHOP       NAIROBI         KE","49":"404",
  "52":"1122334455667788",
  "55":"9F260801020304050607089F2701809F3602000195058000048000"}}
JSON

echo "Atlas codec demo: one 0200 (purchase: 18 fields incl. EMV data in DE 55) in each built-in dialect."
echo "Decoded output is masked as logs show it: PAN 6+4, track data, PIN block and cryptogram hidden."
for d in ascii87 ascii87b bcd87 ebcdic87; do
  echo
  echo "=== $d ==="
  "$ISODUMP" encode --dialect "$d" --frame 2b --hex < "$tmp/0200.json" > "$tmp/$d.hex"
  printf 'wire (%d bytes incl. 2-byte length):\n' $(( $(tr -d '\n' < "$tmp/$d.hex" | wc -c) / 2 ))
  tr -d '\n' < "$tmp/$d.hex" | fold -w 96 | sed 's/^/  /'
  echo
  "$ISODUMP" decode --dialect "$d" --frame 2b --hex --text < "$tmp/$d.hex" | tail -n +2 > "$tmp/$d.txt"
  if [ "$d" = ascii87 ]; then
    echo "decoded (masked):"
    sed 's/^/  /' "$tmp/$d.txt"
  elif cmp -s "$tmp/ascii87.txt" "$tmp/$d.txt"; then
    echo "decoded (masked): the same $(grep -c '^  DE' "$tmp/$d.txt") fields as ascii87"
  else
    echo "decoded (masked):"
    sed 's/^/  /' "$tmp/$d.txt"
  fi
  "$ISODUMP" decode --dialect "$d" --frame 2b --hex --unmasked < "$tmp/$d.hex" |
    "$ISODUMP" encode --dialect "$d" --frame 2b --hex > "$tmp/$d.back"
  if cmp -s "$tmp/$d.hex" "$tmp/$d.back"; then
    echo "round trip: decode -> encode gives the same $d bytes"
  else
    echo "round trip: MISMATCH in $d" >&2
    exit 1
  fi
done
echo
echo "More: build/bin/isodump --help, docs/iso8583.md, build/bin/bench-codec."
