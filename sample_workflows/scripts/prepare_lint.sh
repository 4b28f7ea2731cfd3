#!/bin/sh
# Checks the lint tool chain before fanning out over the repositories.
. "$(dirname "$0")/_lib.sh"
for tool in golangci-lint ruff clippy eslint swiftlint ktlint; do
  nap 0.05 0.15
  echo "tool $tool: ok"
done
flow_output '{"markers": ["tools_ready"], "context": "6 linters ready"}'
