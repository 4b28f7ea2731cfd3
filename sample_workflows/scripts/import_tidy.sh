#!/bin/sh
# After import-records' fan-out succeeded: remove the notes its records kept of their first
# attempts (import_record.sh), and any a batch that was never retried left a day or more ago.
. "$(dirname "$0")/_lib.sh"
base="${TMPDIR:-/tmp}/runkon-sample-import"
if [ -n "${BATCH:-}" ]; then
  rm -rf "${base:?}/$BATCH"
fi
if [ -d "$base" ]; then
  find "$base" -mindepth 1 -maxdepth 1 -type d -mtime +0 -exec rm -rf {} +
  rmdir "$base" 2>/dev/null || true
fi
echo "import notes tidied"
