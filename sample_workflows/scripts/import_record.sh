#!/bin/sh
# Imports one record. Records rec-05, rec-10, … fail on their first attempt in a batch (BATCH: the
# importing run's id), each for one of three reasons whose messages differ from record to record,
# and import on the next attempt in that batch. Without a batch every record imports.
. "$(dirname "$0")/_lib.sh"
record=${RECORD:-rec-01}
n=$(echo "$record" | sed 's/^rec-0*//')
n=${n:-0}
nap 0.2 0.8
echo "importing $record"
if [ -n "${BATCH:-}" ] && [ $((n % 5)) -eq 0 ]; then
  seen="${TMPDIR:-/tmp}/runkon-sample-import/$BATCH"
  if [ ! -f "$seen/$record" ]; then
    mkdir -p "$seen" && touch "$seen/$record"
    case $((n / 5 % 3)) in
      1) echo "rate limited: retry after $((n + 7))s (request 0x$(printf '%06x' $((n * 7919))))" >&2 ;;
      2) echo "schema mismatch in data/records/$record.json line $((n * 3)): expected int" >&2 ;;
      *) echo "connection reset by 10.0.$n.7:443" >&2 ;;
    esac
    exit 3
  fi
fi
echo "$record imported"
