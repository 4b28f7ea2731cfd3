#!/bin/sh
# Runs inside a nested `always` block.
. "$(dirname "$0")/_lib.sh"
nap 0.05
echo "removed temporary proofreading files (as ${GIT_AUTHOR_NAME:-nobody})"
