#!/usr/bin/env bash
# Runs every test in two lanes at once (what `make test` does):
#  - the tests marked `retrain` retrain the whole dialogue model (minutes of
#    both cores each) at the lowest CPU priority;
#  - everything else at normal priority. Those tests mostly wait (real-time
#    audio, SIP and RTP, browsers, subprocesses), leaving the cores idle for
#    the retrains, and they keep the CPU whenever they need it.
# The lanes share nothing but the trained model (each retrain works on a
# private copy of the project). The retrain lane's output follows the main
# lane's; the exit status is the first failing lane's.
# Extra arguments go to both lanes' pytest.
set -uo pipefail
cd "$(dirname "$0")/.."

bin=.venv/bin
scratch=$(mktemp -d "${TMPDIR:-/tmp}/voicebot-retrain-tests.XXXXXX")
retrain_lane=""
finish() {
  # Interrupted: the retrain lane (its own process group: pytest, a retrain,
  # rasa train) goes too. Background jobs of a script ignore Ctrl-C.
  [ -n "$retrain_lane" ] && kill -TERM -- "-$retrain_lane" 2>/dev/null
  rm -rf "$scratch"
}
trap finish EXIT
trap 'exit 130' INT TERM

setsid nice -n 19 "$bin/pytest" -m retrain -p no:cacheprovider --basetemp "$scratch/tmp" "$@" \
  >"$scratch/retrain.log" 2>&1 &
retrain_lane=$!

"$bin/pytest" -m "not retrain" "$@"
main_status=$?

wait "$retrain_lane"
retrain_status=$?
retrain_lane=""
# 5: the arguments chose no test that retrains.
[ "$retrain_status" -eq 5 ] && retrain_status=0
echo
echo "== tests that retrain the model (run beside the others at low CPU priority) =="
cat "$scratch/retrain.log"

if [ "$main_status" -ne 0 ]; then
  exit "$main_status"
fi
exit "$retrain_status"
