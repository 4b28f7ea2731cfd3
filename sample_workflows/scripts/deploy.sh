#!/bin/sh
# A pretend deployment with a few progress lines.
. "$(dirname "$0")/_lib.sh"
echo "deploying ${VERSION:-?} to ${TARGET:-staging}"
for step in "upload artifacts" "migrate database" "roll out 1/3" "roll out 2/3" "roll out 3/3"; do
  nap 0.1 0.4
  echo "  $step ... done"
done
flow_output '{"markers": ["deployed"], "context": "'"${VERSION:-?}"' is live on '"${TARGET:-staging}"'"}'
