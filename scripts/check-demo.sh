#!/usr/bin/env bash
# Runs `tcbackup demo` in a scratch directory, then checks every Redis RDB
# file it downloaded with redis-check-rdb (except the files of encrypted
# sets, whose manifest says "encrypted": true: they are ciphertext; for
# those it checks the decryption key file instead: mode 0600 and not empty,
# or no key_file in the manifest for a key the API did not give out), every
# PostgreSQL archive with `tar -tzf` (or `zstd -t` and `tar --zstd -tf`),
# that a manual backup is marked and the snapshot backup skipped, and that
# a second run downloads nothing.
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
checked=0
encrypted=0
keys=0
for f in "${rdbs[@]}"; do
  manifest="$(dirname "$f")/manifest.json"
  if grep -q '"encrypted": true' "$manifest"; then
    encrypted=$((encrypted + 1))
    continue
  fi
  redis-check-rdb "$f" > check.log 2>&1 || { cat check.log; echo "redis-check-rdb rejected $f" >&2; exit 1; }
  checked=$((checked + 1))
done
[ "$checked" -gt 0 ] || { echo "the demo downloaded no unencrypted RDB file" >&2; exit 1; }
echo "redis-check-rdb: $checked RDB files OK"

# Encrypted sets: ciphertext (no REDIS magic), and the key beside it.
[ "$encrypted" -gt 0 ] || { echo "the demo downloaded no encrypted Redis set" >&2; exit 1; }
for manifest in tcbackup-demo/crs-*/*/manifest.json; do
  grep -q '"encrypted": true' "$manifest" || continue
  set_dir=$(dirname "$manifest")
  for f in "$set_dir"/*.rdb; do
    if [ "$(head -c 5 "$f")" = "REDIS" ]; then
      echo "an encrypted set holds a plain RDB file: $f" >&2; exit 1
    fi
  done
  if grep -q '"key_file": "DECRYPT-KEY"' "$manifest"; then
    key="$set_dir/DECRYPT-KEY"
    [ -f "$key" ] && [ ! -L "$key" ] || { echo "no key file in $set_dir" >&2; exit 1; }
    [ -s "$key" ] || { echo "empty key file $key" >&2; exit 1; }
    mode=$(stat -c %a "$key")
    [ "$mode" = 600 ] || { echo "key file $key has mode $mode, not 600" >&2; exit 1; }
    keys=$((keys + 1))
  elif [ -e "$set_dir/DECRYPT-KEY" ]; then
    echo "a key file in $set_dir whose manifest names none" >&2; exit 1
  fi
done
[ "$keys" -gt 0 ] || { echo "no encrypted set came with its key" >&2; exit 1; }
echo "encrypted: $encrypted ciphertext files skipped by redis-check-rdb, $keys key file(s) 0600"

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

# A manual backup is marked as such, and the snapshot base backup is
# listed as skipped with its reason, with nothing on disk for it.
grep -q "\[manual: " demo.log || { cat demo.log; echo "the demo did not mark a manual backup" >&2; exit 1; }
grep -q 'skipped: backup method "snapshot"' demo.log || { cat demo.log; echo "the demo did not say it skipped the snapshot backup" >&2; exit 1; }
[ ! -e tcbackup-demo/postgres-snap9x2q ] || [ -z "$(ls -A tcbackup-demo/postgres-snap9x2q)" ] || { echo "the demo wrote something for the snapshot backup" >&2; exit 1; }
echo "manual backup marked, snapshot backup skipped"

"$bin" demo > demo2.log 2>&1
grep -q "^0 set(s) published" demo2.log || { cat demo2.log; echo "a second demo run downloaded again" >&2; exit 1; }
echo "second run: nothing downloaded again"
