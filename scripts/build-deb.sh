#!/usr/bin/env bash
# Builds the Debian package: generates what the package ships besides the
# binary into target/deb-assets/ (man pages and completions from the clap
# definition, the systemd units pointed at /usr/bin), then runs `cargo deb`
# (metadata in Cargo.toml, [package.metadata.deb]; maintainer scripts in
# debian/). Prints the path of the .deb on its last line.
# Needs cargo-deb (`cargo install cargo-deb --locked`).
set -euo pipefail
cd "$(dirname "$0")/.."

assets=target/deb-assets
rm -rf "$assets"
mkdir -p "$assets/man" "$assets/completions" "$assets/systemd"

# The release binary generates its own docs, so they match what is shipped.
cargo build --release --quiet -p tcbackup --bin tcbackup
bin=target/release/tcbackup
"$bin" generate man --dir "$assets/man" 2>/dev/null
gzip -9n "$assets"/man/*.1
for shell in bash zsh fish; do
  "$bin" generate completions "$shell" --dir "$assets/completions" 2>/dev/null
done

# The units in systemd/ name /usr/local/bin (a `cargo install`); the package
# installs /usr/bin/tcbackup.
for unit in systemd/*.service systemd/*.timer; do
  sed 's|/usr/local/bin/tcbackup|/usr/bin/tcbackup|g' "$unit" > "$assets/systemd/$(basename "$unit")"
done
if grep -q /usr/local "$assets"/systemd/*; then
  echo "build-deb: a unit still names /usr/local" >&2
  exit 1
fi

# --no-build: the binary above is the one the docs came from. --strip:
# profile.release keeps line tables for backtraces; Debian wants stripped
# binaries (lintian: unstripped-binary-or-object).
cargo deb -p tcbackup --no-build --strip 2>&1 | tail -n 1
