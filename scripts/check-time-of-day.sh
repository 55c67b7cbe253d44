#!/usr/bin/env bash
# Runs the tests whose data depend on the time of day (the emulator's
# sample, retention, prune plans, which sets are fetched, schedules) with the
# system clock faked by libfaketime at several hours of today in UTC+8:
# 00:40 (where the old sample lost its shape), 02:10 (between the daily base
# backup and its settling margin), 12:00, and 23:50. Both the test process and
# the tcbackup binary it starts see the faked clock (LD_PRELOAD is
# inherited); monotonic time stays real so timeouts behave.
#
# The test binaries are built first with the real clock and then run
# directly: cargo and rustc are never run under faketime (cargo compares
# file times, and rustc has been seen to hang under libfaketime).
#
#   scripts/check-time-of-day.sh              # the default hours
#   HOURS="00:40 05:55" scripts/check-time-of-day.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v faketime >/dev/null 2>&1; then
  echo "faketime is not installed (Debian package: faketime)" >&2
  exit 1
fi

# Build with the real clock; collect the test executables cargo reports.
mapfile -t bins < <(
  cargo test --no-run --message-format=json --test it --lib --bins 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if msg.get("reason") == "compiler-artifact" and msg.get("executable") and msg.get("profile", {}).get("test"):
        print(msg["target"]["name"] + "\t" + msg["executable"])
'
)
it_bin=""
unit_bins=()
for entry in "${bins[@]}"; do
  name=${entry%%$'\t'*}
  path=${entry#*$'\t'}
  if [ "$name" = it ]; then it_bin=$path; else unit_bins+=("$path"); fi
done
if [ -z "$it_bin" ] || [ ${#unit_bins[@]} -eq 0 ]; then
  echo "could not find the test executables" >&2
  exit 1
fi

hours=${HOURS:-"00:40 02:10 12:00 23:50"}
day=$(TZ=Asia/Shanghai date +%F)
export FAKETIME_DONT_FAKE_MONOTONIC=1
passed=0
# Run one test executable under the faked clock, unless no test matches its
# filters; add its passes to the count (a failure stops the script).
run_at() {
  local at=$1 bin=$2
  shift 2
  local listed
  # Captured first: `grep -q` closing a pipe early would make the lister
  # fail with SIGPIPE under pipefail, and a binary be skipped by chance.
  listed=$("$bin" --list "$@" 2>/dev/null) || return 1
  case "$listed" in
    *": test"*) ;;
    *) return 0 ;;
  esac
  local out
  out=$(TZ=UTC faketime -f "@$at" "$bin" --quiet "$@" 2>&1) || { printf '%s\n' "$out"; return 1; }
  printf '%s\n' "$out" | grep '^test result:'
  local n
  n=$(printf '%s\n' "$out" | sed -n 's/^test result: ok\. \([0-9]*\) passed.*/\1/p')
  passed=$((passed + ${n:-0}))
}
for hour in $hours; do
  at=$(date -u -d "$day $hour +08:00" '+%Y-%m-%d %H:%M:%S')
  printf '\n--- %s %s UTC+8 (%s UTC) ---\n' "$day" "$hour" "$at"
  # '@' starts the faked clock at that instant and lets it run.
  run_at "$at" "$it_bin" now::
  for bin in "${unit_bins[@]}"; do
    run_at "$at" "$bin" sample:: retention daemon::
  done
done
echo "hours: $hours"
echo "time-of-day: $passed passed, 0 failed"
