#!/bin/sh
# One nightly housekeeping task (simulated).
. "$(dirname "$0")/_lib.sh"
echo "task: ${TASK:-?}"
nap 0.2 0.8
echo "done: ${TASK:-?}"
flow_output '{"markers": ["done"], "context": "'"${TASK:-?}"' finished"}'
