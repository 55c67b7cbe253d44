#!/usr/bin/env bash
# bench-transfer.sh: the transfer engine against curl and aria2c over loopback.
#
# One run prints, side by side (median of RUNS runs each, the two tools
# alternating):
#   1. one SIZE object, no cap: tcbackup single stream (size + CRC-64 + SHA-256
#      checks, fsync) vs `curl -o` (no checks, no fsync): wall time, MiB/s,
#      user+sys CPU seconds per GiB, peak RSS;
#   2. the same object with a per-connection cap of RATE_MIB MiB/s on the
#      server (as links to COS often are): tcbackup with no connection
#      setting (the adaptive count, up to the default 16) vs
#      `aria2c -x16 -s16` and `aria2c -x4 -s4`;
#   3. eight SIZE objects downloaded at once by tcbackup (up to 4 connections
#      each, 16 in all, the engine's default pool): peak RSS.
# The server is the emulated COS (`examples/bench_transfer.rs serve`), a
# separate process, so its CPU is not counted for either client.
#
# Usage: scripts/bench-transfer.sh
# Environment: SIZE_MIB (default 1024), RATE_MIB (default 20), RUNS (default 3),
#   BENCH_DIR (default: a temporary directory under target/, same disk as a
#   real download directory; needs 9 x SIZE free).
# Needs curl and GNU time (/usr/bin/time); installs aria2 with apt-get when
# aria2c is missing. Takes a few minutes.
set -euo pipefail

cd "$(dirname "$0")/.."
SIZE_MIB=${SIZE_MIB:-1024}
RATE_MIB=${RATE_MIB:-20}
RUNS=${RUNS:-3}
SIZE=$((SIZE_MIB * 1024 * 1024))
RATE=$((RATE_MIB * 1024 * 1024))

if ! command -v aria2c >/dev/null; then
    echo "installing aria2 ..." >&2
    apt-get update -qq >/dev/null && apt-get install -y -qq aria2 >/dev/null
fi
for tool in curl aria2c /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done

cargo build --release --quiet --example bench_transfer
BIN=target/release/examples/bench_transfer
mkdir -p target
WORK=${BENCH_DIR:-$(mktemp -d target/bench-transfer.XXXXXX)}
mkdir -p "$WORK"
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    rm -rf "$WORK/out" "$WORK"/*.time "$WORK"/*.runs "$WORK"/run.err "$WORK"/serve.log
    [ -z "${BENCH_DIR:-}" ] && rm -rf "$WORK"
}
trap cleanup EXIT

# start_server FILES [RATE]: serve FILES objects; sets SERVER_PID and URLS.
start_server() {
    local rate_arg=()
    [ -n "${2:-}" ] && rate_arg=(--rate "$2")
    "$BIN" serve --size "$SIZE" --files "$1" "${rate_arg[@]}" >"$WORK/serve.log" &
    SERVER_PID=$!
    until grep -q '^ready$' "$WORK/serve.log" 2>/dev/null; do
        kill -0 "$SERVER_PID" 2>/dev/null || { echo "server died" >&2; exit 1; }
        sleep 0.2
    done
    mapfile -t URLS < <(sed -n 's/^url //p' "$WORK/serve.log")
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

# run_once KEY COMMAND...: one run on a clean output directory; appends
# "wall user sys maxrss_kb" to $WORK/KEY.runs.
run_once() {
    local key=$1
    shift
    rm -rf "$WORK/out" && mkdir -p "$WORK/out" && sync
    /usr/bin/time -f '%e %U %S %M' -o "$WORK/run.time" "$@" >/dev/null 2>"$WORK/run.err" || {
        echo "$key failed:" >&2; cat "$WORK/run.err" >&2; exit 1
    }
    tail -n1 "$WORK/run.time" >>"$WORK/$key.runs"
}

# report KEY LABEL BYTES: medians of wall time and CPU time, largest RSS.
report() {
    local runs="$WORK/$1.runs" label=$2 bytes=$3
    local n mid wall cpu rss
    n=$(wc -l <"$runs")
    mid=$(((n + 1) / 2))
    wall=$(awk '{ print $1 }' "$runs" | sort -n | sed -n "${mid}p")
    cpu=$(awk '{ print $2 + $3 }' "$runs" | sort -n | sed -n "${mid}p")
    rss=$(awk '{ print $4 }' "$runs" | sort -n | tail -n1)
    awk -v label="$label" -v bytes="$bytes" -v wall="$wall" -v cpu="$cpu" -v rss="$rss" 'BEGIN {
        gib = bytes / 1073741824
        printf "%-34s %8.2f %9.0f %12.2f %10.0f\n", label, wall, bytes / 1048576 / wall, cpu / gib, rss / 1024
    }'
    rm -f "$runs"
}

header() {
    echo
    echo "== $1"
    printf '%-34s %8s %9s %12s %10s\n' "" "wall s" "MiB/s" "cpu s/GiB" "RSS MiB"
}

echo "tcbackup transfer benchmark: ${SIZE_MIB} MiB objects, median of $RUNS runs, $(nproc) cores"

# Runs alternate between the two tools, so that load from elsewhere on the
# machine hits both alike.
header "1. one object over loopback, no cap"
start_server 1
for _ in $(seq "$RUNS"); do
    run_once tc1 "$BIN" fetch --dir "$WORK/out" --size "$SIZE" "${URLS[0]}"
    run_once curl curl -sS --fail -o "$WORK/out/object.bin" "${URLS[0]}"
done
report tc1 "tcbackup (1 stream, checks, fsync)" "$SIZE"
report curl "curl -o" "$SIZE"
stop_server

header "2. per-connection cap ${RATE_MIB} MiB/s"
start_server 1 "$RATE"
# `--segments 16` is the engine's default upper bound: no connection count
# is given, the engine finds one.
for _ in $(seq "$RUNS"); do
    run_once tcadapt "$BIN" fetch --dir "$WORK/out" --size "$SIZE" --segments 16 "${URLS[0]}"
    run_once aria16 aria2c -q -x16 -s16 --allow-overwrite=true --auto-file-renaming=false \
        -d "$WORK/out" -o object.bin "${URLS[0]}"
    run_once aria4 aria2c -q -x4 -s4 --allow-overwrite=true --auto-file-renaming=false \
        -d "$WORK/out" -o object.bin "${URLS[0]}"
done
report tcadapt "tcbackup (adaptive, up to 16)" "$SIZE"
report aria16 "aria2c -x16 -s16" "$SIZE"
report aria4 "aria2c -x4 -s4" "$SIZE"
stop_server

header "3. eight objects at once (up to 4 connections each, 16 in all)"
start_server 8
for _ in $(seq "$RUNS"); do
    run_once tc8 "$BIN" fetch --dir "$WORK/out" --size "$SIZE" --segments 4 "${URLS[@]}"
done
report tc8 "tcbackup 8 files" "$((8 * SIZE))"
stop_server
