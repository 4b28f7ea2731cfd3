#!/bin/sh
# Lints one repository (simulated). Every third repository has issues until it has been fixed
# (FIXED=1), so the child workflow's `if lint.has_issues` branch runs for some items only.
. "$(dirname "$0")/_lib.sh"
repo=${REPO:-demo-repo}
echo "linting $repo (${LANGUAGE:-unknown})"
nap 0.2 1.2
sum=$(printf '%s' "$repo" | cksum | cut -d' ' -f1)
if [ -z "${FIXED:-}" ] && [ $((sum % 3)) -eq 0 ]; then
  issues=$((sum % 7 + 1))
  echo "$repo: $issues issues"
  flow_output '{"markers": ["has_issues"], "context": "'"$repo"': '"$issues"' lint issues", "issues": "'"$issues"'"}'
else
  echo "$repo: clean"
  flow_output '{"markers": ["clean"], "context": "'"$repo"' is clean"}'
fi
