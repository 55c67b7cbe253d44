#!/usr/bin/env bash
# Runs the tests whose data depend on the time of day (the emulator's
# sample, retention, prune plans, which sets are fetched, schedules) with the
# system clock faked by libfaketime at several hours of today in UTC+8:
# 00:40 (where the old sample lost its shape), 02:10 (between the daily base
# backup and its settling margin), 12:00, and 23:50. Both the test process and
# the tcbackup binary it starts see the faked clock (LD_PRELOAD is
# inherited); monotonic time stays real so timeouts behave.
#
#   scripts/check-time-of-day.sh              # the default hours
#   HOURS="00:40 05:55" scripts/check-time-of-day.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v faketime >/dev/null 2>&1; then
  echo "faketime is not installed (Debian package: faketime)" >&2
  exit 1
fi

# Build with the real clock: cargo compares file times.
cargo test --no-run --quiet --test it --lib --bins 2>/dev/null || cargo test --no-run --test it --lib --bins

hours=${HOURS:-"00:40 02:10 12:00 23:50"}
day=$(TZ=Asia/Shanghai date +%F)
export FAKETIME_DONT_FAKE_MONOTONIC=1
for hour in $hours; do
  at=$(date -u -d "$day $hour +08:00" '+%Y-%m-%d %H:%M:%S')
  printf '\n--- %s %s UTC+8 (%s UTC) ---\n' "$day" "$hour" "$at"
  # '@' starts the faked clock at that instant and lets it run.
  TZ=UTC faketime -f "@$at" cargo test --quiet --test it -- now::
  TZ=UTC faketime -f "@$at" cargo test --quiet --lib --bins -- sample:: retention daemon::
done
echo "time of day: every hour passed ($hours)"
