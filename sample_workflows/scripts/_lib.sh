# Helpers shared by the sample scripts (sourced, never run on its own).
# RUNKON_SAMPLE_SPEED scales every pause: 1 = demo pace (default), 0 = no pauses (tests).

# nap MIN [MAX] — pause MIN seconds, or a random time between MIN and MAX.
nap() {
  t=$(awk -v lo="$1" -v hi="${2:-$1}" -v k="${RUNKON_SAMPLE_SPEED:-1}" -v seed="$$" \
    'BEGIN { srand(seed); printf "%.3f", (lo + rand() * (hi - lo)) * k }')
  case "$t" in
    0 | 0.000 | -*) ;;
    *) sleep "$t" ;;
  esac
}

# flow_output JSON — print the block the engine reads markers, context and exports from.
flow_output() {
  printf '<<<FLOW_OUTPUT>>>\n%s\n<<<END_FLOW_OUTPUT>>>\n' "$1"
}
