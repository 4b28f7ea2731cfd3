#!/bin/sh
# Proofreads one document: emits `typos` when it finds common misspellings.
. "$(dirname "$0")/_lib.sh"
doc=${DOC:-}
if [ -z "$doc" ] || [ ! -f "$doc" ]; then
  echo "document not found: '$doc'" >&2
  exit 2
fi
nap 0.1 0.5
found=$(grep -c -i -E 'teh|recieve|seperate' "$doc" || true)
lines=lines
[ "$found" -eq 1 ] && lines=line
echo "$(basename "$doc"): $found suspicious $lines"
if [ "$found" -gt 0 ]; then
  flow_output '{"markers": ["typos"], "context": "'"$found $lines"' with typos in '"$(basename "$doc")"'"}'
else
  flow_output '{"markers": [], "context": "'"$(basename "$doc")"' reads fine"}'
fi
