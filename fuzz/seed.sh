#!/bin/sh
# Seeds the fuzz corpora from the byte-exact torture fixtures and the typical INVITE.
set -eu
cd "$(dirname "$0")"
for t in parse_message parse_edit_serialize parse_uri; do mkdir -p "corpus/$t"; done
for f in ../tests/fixtures/rfc4475/*.dat ../tests/fixtures/rfc5118/* ../tests/fixtures/typical_invite.sip; do
  b=$(basename "$f")
  cp "$f" "corpus/parse_message/$b"
  # parse_edit_serialize reads its first byte as the edit mask: all edits on
  { printf '\377'; cat "$f"; } > "corpus/parse_edit_serialize/$b"
  # parse_uri: the request line's URI and every header value
  head -n 1 "$f" | cut -d' ' -f2 > "corpus/parse_uri/$b.ruri"
  grep -a ':' "$f" | sed -e 's/^[^:]*:[ \t]*//' -e 's/\r$//' | head -n 20 | split -l 1 -a 3 - "corpus/parse_uri/$b.v" || true
done
