#!/usr/bin/env bash
# Checks the systemd units in systemd/: `systemd-analyze verify` must pass, the
# daemon's unit must keep the settings the daemon relies on (Type=notify,
# WatchdogSec=, the SIGHUP reload, a stop timeout above its 60 s grace), and
# `systemd-analyze security` must rate each service's exposure at 1.5 or lower.
# ExecStart paths are pointed at the freshly built binary, since
# /usr/local/bin/tcbackup need not exist on a CI machine.
set -euo pipefail
cd "$(dirname "$0")/.."
max_exposure=1.5

cargo build --quiet
bin="$PWD/target/debug/tcbackup"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for unit in systemd/*.service systemd/*.timer; do
  sed "s|/usr/local/bin/tcbackup|$bin|g" "$unit" > "$work/$(basename "$unit")"
done

( cd "$work" && systemd-analyze verify ./*.service ./*.timer )
echo "systemd-analyze verify: ok"

# What the daemon relies on: sd_notify readiness and watchdog, SIGHUP reload.
for line in 'Type=notify' 'NotifyAccess=main' 'ExecReload=/bin/kill -HUP $MAINPID' \
            'KillSignal=SIGTERM' 'TimeoutStopSec=90s'; do
  if ! grep -qxF "$line" systemd/tcbackup.service; then
    echo "systemd/tcbackup.service lacks: $line" >&2
    exit 1
  fi
done
grep -q '^WatchdogSec=' systemd/tcbackup.service \
  || { echo "systemd/tcbackup.service lacks WatchdogSec=" >&2; exit 1; }

status=0
for unit in "$work"/*.service; do
  name=$(basename "$unit")
  score=$(cd "$work" && systemd-analyze security --offline=true "./$name" 2>/dev/null \
    | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
  if [ -z "$score" ]; then
    echo "systemd-analyze security gave no score for $name" >&2
    status=1
  elif awk -v s="$score" -v m="$max_exposure" 'BEGIN { exit !(s > m) }'; then
    echo "$name: exposure $score is above $max_exposure" >&2
    status=1
  else
    echo "$name: exposure $score (limit $max_exposure)"
  fi
done
exit $status
