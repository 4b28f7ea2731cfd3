#!/bin/sh
# Marks the start of the nightly run.
. "$(dirname "$0")/_lib.sh"
nap 0.1
echo "nightly started $(date -u +%Y-%m-%dT%H:%M:%SZ)"
flow_output '{"markers": [], "context": "nightly maintenance started"}'
