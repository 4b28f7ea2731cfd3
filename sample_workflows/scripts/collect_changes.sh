#!/bin/sh
# Pretend to collect the changes merged since $SINCE for release $VERSION.
. "$(dirname "$0")/_lib.sh"
echo "collecting changes ${SINCE:-?}..${VERSION:-HEAD}"
count=0
for change in "feat: ordered fan-out" "fix: gate timeout message" "perf: faster store writes" \
  "docs: agent front matter" "feat: dashboard themes" "fix: resume keeps completed items"; do
  nap 0.05 0.2
  count=$((count + 1))
  echo "  #$((1200 + count)) $change"
done
if [ "${SINCE:-}" = "${VERSION:-}" ]; then
  flow_output '{"markers": ["no_changes"], "context": "nothing changed since '"$SINCE"'"}'
else
  flow_output '{"markers": ["has_changes"], "context": "'"$count"' changes since '"${SINCE:-?}"'", "change_count": "'"$count"'"}'
fi
