#!/bin/sh
# Runs in the `always` block: reports how the release-notes run ended.
. "$(dirname "$0")/_lib.sh"
nap 0.1
echo "release ${VERSION:-?}: notes workflow ${STATUS:-unknown}"
