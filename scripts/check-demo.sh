#!/usr/bin/env bash
# Runs `tcbackup demo` in a scratch directory, then checks every Redis RDB
# file it downloaded with redis-check-rdb and every PostgreSQL archive with
# `tar -tzf` (or `zstd -t` and `tar --zstd -tf`), and that a second run
# downloads nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet
bin="$PWD/target/debug/tcbackup"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

"$bin" demo > demo.log 2>&1 || { cat demo.log; echo "tcbackup demo failed" >&2; exit 1; }

rdbs=(tcbackup-demo/crs-*/*/*.rdb)
[ -e "${rdbs[0]}" ] || { echo "the demo downloaded no RDB file" >&2; exit 1; }
for f in "${rdbs[@]}"; do
  redis-check-rdb "$f" > check.log 2>&1 || { cat check.log; echo "redis-check-rdb rejected $f" >&2; exit 1; }
done
echo "redis-check-rdb: ${#rdbs[@]} RDB files OK"

archives=(tcbackup-demo/postgres-*/*/*.tar.gz)
[ -e "${archives[0]}" ] || { echo "the demo downloaded no PostgreSQL archive" >&2; exit 1; }
for f in "${archives[@]}"; do
  tar -tzf "$f" > /dev/null || { echo "not a valid .tar.gz: $f" >&2; exit 1; }
done
echo "tar: ${#archives[@]} PostgreSQL .tar.gz archives OK"

zsts=(tcbackup-demo/postgres-*/*/*.tar.zst)
[ -e "${zsts[0]}" ] || { echo "the demo downloaded no .tar.zst archive" >&2; exit 1; }
for f in "${zsts[@]}"; do
  zstd -q -t "$f" || { echo "zstd rejected $f" >&2; exit 1; }
  tar --zstd -tf "$f" > /dev/null || { echo "not a valid .tar.zst: $f" >&2; exit 1; }
done
echo "tar --zstd: ${#zsts[@]} PostgreSQL .tar.zst archives OK"

"$bin" demo > demo2.log 2>&1
grep -q "^0 set(s) published" demo2.log || { cat demo2.log; echo "a second demo run downloaded again" >&2; exit 1; }
echo "second run: nothing downloaded again"
