#!/bin/sh
# Looks at the change under review and says what kinds of files it touches.
. "$(dirname "$0")/_lib.sh"
echo "scanning ${CHANGE:-the change}"
for f in src/engine/foreach.py src/engine/gate.py docs/agents.md tests/test_foreach.py; do
  nap 0.05 0.2
  echo "  touched $f"
done
flow_output '{"markers": ["has_code", "has_docs", "has_tests"], "context": "4 files: code, docs and tests"}'
